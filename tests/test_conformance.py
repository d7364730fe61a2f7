"""The conformance kit (embstore.testing): every installed plugin passes it, and it catches
each kind of contract breach it claims to."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from embstore.config import PluginConfig
from embstore.embeddings import Embeddings
from embstore.errors import EmbstoreError, InputError
from embstore.inputs import INPUT_KINDS, Inputs, InputSpec
from embstore.producer import Producer
from embstore.testing import (
    ConformanceError,
    ConformanceReport,
    check_producer,
    check_retriever,
    make_frames,
    make_inputs,
    make_vectors,
    parametrize_with_checks,
    producer_checks,
    retriever_checks,
)


# ---------------------------------------------------------------- every installed plugin


def _installed(kind: str) -> list:
    """One param per producer or retriever that came through the entry-point group, found at
    collection time, so a plugin added to pyproject.toml is covered with no edit here."""
    from embstore.catalogue import catalogue

    try:
        registry = catalogue(reload=True)
    except EmbstoreError as exc:  # report it as a failing test, not a collection error
        return [pytest.param(exc, id=f"{kind}:registry-error")]
    table = registry.producers if kind == "producer" else registry.retrievers
    return [
        pytest.param(cls, id=f"{kind}:{name}")
        for name, cls in sorted(table.items())
        if registry.owner(kind, name).source == "entry point"
    ]


@pytest.mark.parametrize("cls", _installed("producer"))
def test_installed_producer_conforms(cls):
    if isinstance(cls, Exception):
        pytest.fail(f"plugins did not load: {cls}")
    report = check_producer(cls)
    assert report.ok and not report.failed


@pytest.mark.parametrize("cls", _installed("retriever"))
def test_installed_retriever_conforms(cls):
    if isinstance(cls, Exception):
        pytest.fail(f"plugins did not load: {cls}")
    report = check_retriever(cls)
    assert report.ok and not report.failed


def test_builtins_are_among_the_checked():
    ids = [p.id for p in _installed("producer") + _installed("retriever")]
    assert {"producer:item2vec", "retriever:faiss"} <= set(ids)


def _installed_classes() -> list:
    return [p.values[0] for p in _installed("producer") + _installed("retriever")
            if not isinstance(p.values[0], Exception)]


@parametrize_with_checks(_installed_classes())
def test_installed_plugin_check(check):
    """Each check of each installed plugin as its own test id (the registry error shows above)."""
    check()


def test_each_check_is_its_own_test_id():
    ids = [check_id for check_id, _ in producer_checks(Random)]
    assert "producer:kit_random-fit: same seed gives identical vectors" in ids and len(ids) == len(set(ids))
    classes = {cls.name: cls for cls in _installed_classes()}
    ids = [check_id for check_id, _ in producer_checks(classes["item2vec"])]
    ids += [check_id for check_id, _ in retriever_checks(classes["faiss"])]
    assert {"producer:item2vec-fit: same seed gives identical vectors",
            "retriever:faiss-search: k larger than the index pads with -1",
            "retriever:faiss-save/load: same results after a round trip (cosine)"} <= set(ids)


def test_checks_of_one_subject_share_their_fits():
    class Counted(Random):
        name = "kit_counted"
        fits = 0

        def fit(self, inputs, config):
            type(self).fits += 1
            return super().fit(inputs, config)

    check_producer(Counted)
    one_call, Counted.fits = Counted.fits, 0
    for _, run in producer_checks(Counted):
        assert run().ok
    assert Counted.fits == one_call


def test_a_check_id_fails_or_skips_like_its_line_in_the_report():
    import unittest

    class Loose(PluginConfig):
        dim: int

    class Sloppy(Random):
        name = "kit_sloppy"
        Config = Loose

    checks = dict(producer_checks(Sloppy))
    with pytest.raises(ConformanceError, match="dim"):
        checks["producer:kit_sloppy-config: every field has a default"]()
    with pytest.raises(unittest.SkipTest, match="needs 'config: the test config parses'"):
        checks["producer:kit_sloppy-fit: interactions gives valid Embeddings"]()


# ---------------------------------------------------------------- generated data


def test_generated_inputs_load_through_inputs_for_every_kind(tmp_path):
    paths = make_inputs(tmp_path, INPUT_KINDS)
    data = Inputs([InputSpec(kind, path) for kind, path in paths.items()])
    inter = data.interactions()
    assert len(inter) > 500 and inter["item_id"].nunique() == 40
    items = set(inter["item_id"])
    edges = data.edges()
    assert set(edges["src"]) | set(edges["dst"]) == items and (edges["weight"] > 0).all()
    assert set(data.side_info()["item_id"]) == items
    ids, matrix = data.features()
    assert set(ids) == items and matrix.shape == (40, 8) and matrix.dtype == np.float32
    table = data.table()
    assert {"user_id", "item_id", "label"} <= set(table.columns) and set(table["label"]) == {0, 1}
    assert len(data.sequences()) == inter["user_id"].nunique()


def test_generated_data_is_seeded_and_has_integer_variant():
    a, b = make_frames(["interactions", "edges"], seed=3), make_frames(["interactions", "edges"], seed=3)
    assert all(a[k].equals(b[k]) for k in a)
    ints = make_frames(["interactions", "features"], id_type="int")
    assert ints["interactions"]["item_id"].dtype.kind == "i" and ints["features"]["id"].dtype.kind == "i"
    v = make_vectors(50, 8)
    assert v.shape == (50, 8) and v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


# ---------------------------------------------------------------- producers the kit must judge


class SeedConfig(PluginConfig):
    dim: int = Field(4, ge=1, description="Vector dimension.")
    seed: int = Field(0, ge=0, description="Random seed.")


class Random(Producer):
    """A well-behaved producer: one seeded random vector per item."""

    name = "kit_random"
    Config = SeedConfig
    requires = frozenset({"interactions"})

    def fit(self, inputs, config):
        items = np.unique(inputs.interactions()["item_id"].to_numpy())
        rng = np.random.default_rng(config.seed)
        return Embeddings(items, rng.normal(size=(len(items), config.dim)).astype(np.float32))


def failed(exc_info) -> dict[str, str]:
    return dict(exc_info.value.report.failed)


def test_a_conforming_producer_passes_with_a_report():
    report = check_producer(Random)
    assert isinstance(report, ConformanceReport) and report.ok
    assert {"fit: interactions gives valid Embeddings", "fit: same seed gives identical vectors",
            "fit: empty interactions raises an EmbstoreError", "config: unknown key is a ConfigError",
            "fit: integer ids", "fit: ids come from the inputs"} <= set(report.passed)
    assert "PASS fit: same seed gives identical vectors" in str(report)


def test_config_without_defaults_or_descriptions_fails_and_skips_the_fits():
    class Loose(PluginConfig):
        dim: int

    class Sloppy(Random):
        name = "kit_sloppy"
        Config = Loose

    with pytest.raises(ConformanceError) as info:
        check_producer(Sloppy)
    problems = failed(info)
    assert "dim" in problems["config: every field has a default"]
    assert "dim" in problems["config: every field has a description"]
    assert "config: the test config parses" in problems
    assert "fit: interactions gives valid Embeddings" in dict(info.value.report.skipped)
    assert "fails 3 of" in str(info.value) and isinstance(info.value, AssertionError)


def test_unseeded_randomness_is_caught():
    class Unseeded(Random):
        def fit(self, inputs, config):
            items = np.unique(inputs.interactions()["item_id"].to_numpy())
            return Embeddings(items, np.random.default_rng().normal(size=(len(items), 4)).astype(np.float32))

    with pytest.raises(ConformanceError) as info:
        check_producer(Unseeded)
    assert list(failed(info)) == ["fit: same seed gives identical vectors"]


def test_non_finite_vectors_and_strange_ids_are_caught():
    class NaNs(Random):
        def fit(self, inputs, config):
            emb = super().fit(inputs, config)
            vectors = emb.vectors.copy()
            vectors[0, 0] = np.nan
            return Embeddings(emb.ids, vectors)

    class Strangers(Random):
        def fit(self, inputs, config):
            emb = super().fit(inputs, config)
            return Embeddings(np.array([f"x{i}" for i in range(len(emb))], dtype=object), emb.vectors)

    with pytest.raises(ConformanceError) as info:
        check_producer(NaNs)
    assert "NaN" in failed(info)["fit: interactions gives valid Embeddings"]
    with pytest.raises(ConformanceError) as info:
        check_producer(Strangers)
    assert "not in the inputs" in failed(info)["fit: ids come from the inputs"]


def test_raw_errors_on_empty_input_are_caught():
    class ReadsFilesItself(Random):
        def fit(self, inputs, config):
            frame = pd.read_csv(inputs.spec("interactions").path)
            first = frame["item_id"].iloc[0]  # IndexError on an empty file
            items = np.unique(frame["item_id"].to_numpy())
            vectors = np.ones((len(items), 2), dtype=np.float32) * (hash(first) % 2)
            return Embeddings(items, vectors)

    with pytest.raises(ConformanceError) as info:
        check_producer(ReadsFilesItself)
    assert "IndexError" in failed(info)["fit: empty interactions raises an EmbstoreError"]


def test_ids_must_keep_their_type():
    class Stringifies(Random):
        def fit(self, inputs, config):
            emb = super().fit(inputs, config)
            return Embeddings(np.array([str(i) for i in emb.ids], dtype=object), emb.vectors)

    with pytest.raises(ConformanceError) as info:
        check_producer(Stringifies)
    assert list(failed(info)) == ["fit: integer ids"]


def test_unknown_input_kind_is_named_and_fits_are_skipped():
    class Clicks(Random):
        requires = frozenset({"clicks"})

    with pytest.raises(ConformanceError) as info:
        check_producer(Clicks)
    assert "clicks" in failed(info)["class: requires and accepts are known input kinds"]
    assert "fit: clicks gives valid Embeddings" in dict(info.value.report.skipped)


def test_rejecting_the_generated_data_tells_how_to_pass_your_own(tmp_path):
    class NeedsPrice(Random):
        requires = frozenset({"table"})

        def fit(self, inputs, config):
            table = inputs.table()
            if "clicks" not in table.columns:
                raise InputError("table needs a 'clicks' column")
            return Embeddings(table["item_id"].unique(), np.ones((table["item_id"].nunique(), 2), np.float32))

    with pytest.raises(ConformanceError) as info:
        check_producer(NeedsPrice)
    assert "pass your own" in failed(info)["fit: table gives valid Embeddings"]
    own = make_frames(["table"])["table"].assign(clicks=1)
    report = check_producer(NeedsPrice, inputs={"table": own})  # a DataFrame: the kit writes it
    assert report.ok
    path = tmp_path / "t.csv"
    own.to_csv(path, index=False)
    report = check_producer(NeedsPrice, inputs={"table": path})  # a file: ids cannot be checked
    assert "fit: ids come from the inputs" in dict(report.skipped)


def test_conformance_config_and_config_argument_are_used():
    class SlowConfig(PluginConfig):
        epochs: int = Field(1000, ge=1, description="Passes; the kit needs few.")
        seed: int = Field(0, description="Seed.")

    class Slow(Random):
        Config = SlowConfig
        conformance_config = {"epochs": 1}

        def fit(self, inputs, config):
            if config.epochs > 5:
                raise AssertionError("too slow for the kit")
            return super().fit(inputs, SeedConfig(seed=config.seed))

    assert check_producer(Slow).ok
    with pytest.raises(ConformanceError):
        check_producer(Slow, config={"epochs": 500})


def test_every_input_kind_can_be_required():
    class Everything(Producer):
        name = "kit_everything"
        Config = SeedConfig
        requires = frozenset(INPUT_KINDS)

        def fit(self, inputs, config):
            inputs.interactions(), inputs.edges(), inputs.side_info(), inputs.table()
            ids, matrix = inputs.features()
            return Embeddings(ids, matrix)

    report = check_producer(Everything)
    assert "fit: interactions+edges+side_info+features+table gives valid Embeddings" in report.passed
    assert sum(name.startswith("fit: empty ") for name in report.passed) == 5


def test_either_or_inputs_get_one_scenario_each():
    class Graphy(Random):
        requires = frozenset()
        accepts = frozenset({"interactions", "edges"})

        def fit(self, inputs, config):
            if "edges" in inputs.kinds:
                frame = inputs.edges()
                items = np.unique(np.concatenate([frame["src"].to_numpy(), frame["dst"].to_numpy()]))
            else:
                items = np.unique(inputs.interactions()["item_id"].to_numpy())
            rng = np.random.default_rng(config.seed)
            return Embeddings(items, rng.normal(size=(len(items), 3)).astype(np.float32))

    report = check_producer(Graphy)
    assert {"fit: interactions gives valid Embeddings", "fit: edges gives valid Embeddings"} <= set(report.passed)


def test_multi_role_producers_are_checked_per_role():
    class Both(Random):
        entities = {"user": "user_id", "item": "item_id"}

        def fit(self, inputs, config):
            frame = inputs.interactions()
            rng = np.random.default_rng(config.seed)
            out = {}
            for role in ("user", "item"):
                ids = np.unique(frame[f"{role}_id"].to_numpy())
                out[role] = Embeddings(ids, rng.normal(size=(len(ids), 3)).astype(np.float32))
            return out

    class OneRoleMissing(Both):
        def fit(self, inputs, config):
            return {"user": super().fit(inputs, config)["user"]}

    assert check_producer(Both).ok
    with pytest.raises(ConformanceError) as info:
        check_producer(OneRoleMissing)
    assert "roles ['item', 'user']" in failed(info)["fit: interactions gives valid Embeddings"]


def test_not_a_producer_class():
    with pytest.raises(ConformanceError, match="not a Producer subclass"):
        check_producer(Random())


# ---------------------------------------------------------------- retrievers the kit must judge


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    """The retriever `embstore plugin new --kind retriever` writes: exact numpy search."""
    from embstore.ops.scaffold import scaffold

    target = scaffold("kit_exact", "retriever", tmp_path_factory.mktemp("scaffold"))
    path = target / "src" / "embstore_kit_exact" / "__init__.py"
    spec = importlib.util.spec_from_file_location("embstore_kit_exact", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["embstore_kit_exact"] = module
    spec.loader.exec_module(module)
    yield module.KitExactRetriever
    sys.modules.pop("embstore_kit_exact", None)


def test_a_conforming_retriever_passes(exact):
    report = check_retriever(exact)
    for metric in ("ip", "cosine", "l2"):
        assert f"save/load: same results after a round trip ({metric})" in report.passed
    assert "search: k larger than the index pads with -1" in report.passed


def test_retriever_breaches_are_caught(exact):
    class WorstFirst(exact):
        def search(self, queries, k):
            rows, scores = super().search(queries, k)
            return rows[:, ::-1], scores[:, ::-1]

    class SquaredL2(exact):
        def search(self, queries, k):
            rows, scores = super().search(queries, k)
            return rows, scores**2 if self.config.metric == "l2" else scores

    class NoPadding(exact):
        def search(self, queries, k):
            return super().search(queries, min(k, len(self.vectors_)))

    class NoDimensionCheck(exact):
        def search(self, queries, k):
            q = np.atleast_2d(queries)
            d = self.vectors_.shape[1]
            return super().search(np.pad(q[:, :d], ((0, 0), (0, max(0, d - q.shape[1])))), k)

    class InPlace(exact):
        def build(self, vectors):
            if self.config.metric == "cosine":
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            super().build(vectors)

    class Forgetful(exact):
        def save(self, directory):
            written = super().save(directory)
            np.save(written[0], np.zeros_like(self.vectors_))
            return written

    class RowsOfAnotherQuery(exact):
        def search_rows(self, rows, k):
            return super().search(self.vectors_[np.asarray(rows) + 1], k)

    expected = {
        WorstFirst: "search: best first (ip)",
        RowsOfAnotherQuery: "search_rows: what search gives for the stored rows (ip)",
        SquaredL2: "search: scores follow the metric (l2)",
        NoPadding: "search: k larger than the index pads with -1",
        NoDimensionCheck: "search: dimension mismatch raises",
        InPlace: "build (cosine)",
        Forgetful: "save/load: same results after a round trip (cosine)",
    }
    for cls, check in expected.items():
        with pytest.raises(ConformanceError) as info:
            check_retriever(cls)
        assert check in failed(info), (cls.__name__, info.value.report.failed)


def test_retriever_config_rules(exact):
    from embstore.retriever import RetrieverConfig

    class Bare(RetrieverConfig):
        nlist: int = 4

    class Undocumented(exact):
        Config = Bare

    with pytest.raises(ConformanceError) as info:
        check_retriever(Undocumented)
    assert "nlist" in failed(info)["config: every field has a description"]
