"""Quality gates: evaluators registered through the hook, gates before an alias moves, pipeline files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import CORA, clustered_embeddings
from embstore.cli import cli
from embstore.demo_data import planted_interactions
from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, PluginError
from embstore.versions.gates import EvaluationError, Gate, GateError, parse_evaluate_arg
from embstore.catalogue import catalogue


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    monkeypatch.delenv("EMBSTORE_PLUGINS", raising=False)
    yield
    monkeypatch.delenv("EMBSTORE_PLUGINS", raising=False)
    catalogue(reload=True)


@pytest.fixture
def heldout(tmp_path: Path) -> Path:
    """Users who each consume items of one cluster of clustered_embeddings (id // 20)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        cluster = u % 5
        items = rng.choice(20, size=6, replace=False) + 20 * cluster
        rows += [(f"u{u}", int(i), 1_700_000_000 + 60 * j) for j, i in enumerate(items)]
    path = tmp_path / "heldout.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    return path


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    ids = np.arange(100)
    path = tmp_path / "labels.csv"
    pd.DataFrame({"node_id": ids, "label": [f"c{i // 20}" for i in ids],
                  "split": np.where(ids % 2 == 0, "train", "test")}).to_csv(path, index=False)
    return path


def _random(seed: int) -> Embeddings:
    rng = np.random.default_rng(seed)
    return Embeddings(ids=np.arange(100), vectors=rng.normal(size=(100, 16)).astype(np.float32))


def test_gate_syntax():
    assert Gate.parse("hr@10>=0.05") == Gate("hr@10", ">=", 0.05)
    assert Gate.parse(" drift_mean_cosine <= 1e-1 ") == Gate("drift_mean_cosine", "<=", 0.1)
    assert str(Gate.parse("accuracy>0.5")) == "accuracy>0.5"
    for bad in ("hr@10", "hr@10=>0.1", ">=0.1", "hr@10>=high", "hr@10>=nan"):
        with pytest.raises(ConfigError, match="is not METRIC>=NUMBER"):
            Gate.parse(bad)
    assert parse_evaluate_arg("hit_rate:path=a,b.csv,k=10") == ("hit_rate", {"path": "a,b.csv", "k": 10})
    assert parse_evaluate_arg("team:ids=[1,2], flag=true") == ("team", {"ids": [1, 2], "flag": True})
    assert parse_evaluate_arg("drift") == ("drift", {})
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        parse_evaluate_arg("drift:prod")


def test_built_in_evaluators_are_plugins():
    reg = catalogue()
    assert {"hit_rate", "node_classification", "drift"} <= set(reg.evaluators)
    info = reg.owner("evaluator", "hit_rate")
    assert (info.name, info.source, info.hooks) == ("evaluators", "entry point", ["register_evaluators"])
    listing = CliRunner().invoke(cli, ["plugins"]).stdout
    assert "evaluator:hit_rate" in listing and "evaluator:node_classification" in listing


def test_passing_gates_promote_and_store_the_evaluation(store, heldout, labels):
    evaluate = {"hit_rate": {"path": str(heldout), "k": 10}, "node_classification": {"path": str(labels)}}
    v = store.publish("items", clustered_embeddings(), promote="prod", evaluate=evaluate,
                      gates=["hr@10>=0.3", "accuracy>=0.9"])
    assert v.aliases == ("prod",) and store.resolve("items@prod").number == 1
    ev = store.resolve("items@1").metrics["evaluation"]
    assert ev["hr@10"] >= 0.3 and ev["hr_users"] == 60 and ev["hr_coverage"] == 1.0
    assert ev["accuracy"] == 1.0 and ev["nc_train"] == 50 and ev["nc_test"] == 50
    gates = store.resolve("items@1").metrics["gates"]
    assert gates["passed"] is True and [r["status"] for r in gates["results"]] == ["passed", "passed"]


def test_a_failed_gate_leaves_the_alias_and_says_why(any_store, heldout):
    store = any_store
    store.publish("items", clustered_embeddings(), promote="prod")
    with pytest.raises(GateError) as err:
        store.publish("items", _random(1), promote="prod", evaluate={"hit_rate": {"path": str(heldout)}},
                      gates=["hr@10>=0.5", "hr_users>=10"])
    message = str(err.value)
    hr = store.resolve("items@2").metrics["evaluation"]["hr@10"]
    assert f"hr@10 = {hr:.6g}, threshold >= 0.5: fails" in message
    assert "hr_users" not in message  # only the failing gate is named
    assert "items@2 is published but not promoted; items@prod still points at items@1" in message
    assert store.resolve("items@prod").number == 1 and store.resolve("items@2").status == "published"
    assert [r.gate.metric for r in err.value.failed] == ["hr@10"]
    gates = store.resolve("items@2").metrics["gates"]
    assert gates["passed"] is False and gates["alias"] == "prod"
    assert [r["status"] for r in gates["results"]] == ["failed", "passed"]


def test_missing_metrics_fail_and_version_metrics_can_be_gated(store, heldout):
    store.publish("items", clustered_embeddings(), promote="prod")
    # a gate no evaluator can feed is refused before anything is published (it used to publish, then fail)
    with pytest.raises(ConfigError, match=r"gate hr@10>=0.1 needs metric 'hr@10', and no evaluator is given"):
        store.publish("items", clustered_embeddings(), promote="prod", gates=["hr@10>=0.1"])
    assert [v.number for v in store.versions("items")] == [1]
    with pytest.raises(GateError, match=r"hr@5 was not produced \(produced: hr@10, hr_coverage, hr_users"):
        store.publish("items", clustered_embeddings(), promote="prod", gates=["hr@5>=0.1"],
                      evaluate={"hit_rate": {"path": str(heldout)}})
    v = store.publish("items", clustered_embeddings(), align_to="prod", promote="prod",
                      gates=["alignment.residual_after<=0.01"])  # a gate on the version's own metrics
    assert v.aliases == ("prod",)


def test_drift_gate_against_the_current_alias(store):
    base = clustered_embeddings()
    gate = {"evaluate": {"drift": {"alias": "prod", "k": 5}}, "gates": ["drift_overlap@5>=0.5", "drift_mean_cosine>=0.9"]}
    first = store.publish("items", base, promote="prod", **gate)  # nothing to drift from yet: not applicable
    assert first.aliases == ("prod",)
    assert [r["status"] for r in store.resolve("items@1").metrics["gates"]["results"]] == ["not applicable"] * 2
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(16, 16)))
    rotated = Embeddings(ids=base.ids, vectors=(base.vectors @ q).astype(np.float32))
    assert store.publish("items", rotated, promote="prod", **gate).aliases == ("prod",)
    ev = store.resolve("items@2").metrics["evaluation"]
    assert ev["drift_mean_cosine"] > 0.99 and ev["drift_overlap@5"] > 0.9 and ev["drift_ids_added"] == 0
    assert "items@1" in store.resolve("items@2").metrics["drift"]  # the full report too
    with pytest.raises(GateError, match=r"drift_overlap@5 = [0-9.]+, threshold >= 0.5: fails"):
        store.publish("items", _random(9), promote="prod", **gate)
    assert store.resolve("items@prod").number == 2


def test_bad_evaluators_and_gates_fail_before_anything_is_stored(store, heldout, tmp_path):
    interactions = tmp_path / "i.csv"
    planted_interactions(users=20, clusters=2, items_per_cluster=5).to_csv(interactions, index=False)
    run = lambda **kw: store.run("item2vec", "items", {"interactions": interactions}, {"dim": 4, "epochs": 1}, **kw)
    with pytest.raises(PluginError, match=r"unknown evaluator 'hitrate' \(installed: .*hit_rate"):
        run(evaluate={"hitrate": {}})
    with pytest.raises(ConfigError, match="evaluator 'hit_rate' config: unknown key 'kk'"):
        run(evaluate=[f"hit_rate:path={heldout},kk=3"])
    with pytest.raises(ConfigError, match="evaluator 'hit_rate' config: path"):
        run(evaluate={"hit_rate": {}})
    with pytest.raises(ConfigError, match="not METRIC>=NUMBER"):
        run(gates=["hr@10 > ten"])
    with pytest.raises(ConfigError, match="not METRIC>=NUMBER"):
        store.publish("items", clustered_embeddings(), gates=["oops"])
    assert store.sets() == []


def test_an_evaluator_that_fails_leaves_the_alias(store, tmp_path):
    store.publish("items", clustered_embeddings(), promote="prod")
    with pytest.raises(EvaluationError, match=r"evaluator 'hit_rate' failed on items@2: .*missing.csv"):
        store.publish("items", clustered_embeddings(), promote="prod",
                      evaluate={"hit_rate": {"path": str(tmp_path / "missing.csv")}})
    assert store.resolve("items@prod").number == 1
    assert "failed" in store.resolve("items@2").metrics["gates"]["error"]


def test_a_team_evaluator_through_the_hook(store, monkeypatch, tmp_path):
    (tmp_path / "team_eval.py").write_text(textwrap.dedent('''
        from embstore.config import PluginConfig
        from embstore.evaluator import Evaluator
        from embstore.hookspecs import hookimpl

        class NormConfig(PluginConfig):
            ids: list[int] = [0, 1, 2]

        class MeanNorm(Evaluator):
            name = "mean_norm"
            Config = NormConfig

            def evaluate(self, store, version, config):
                m = store.vectors(version.ref, config.ids).matrix
                return {"mean_norm": float((m ** 2).sum(axis=1).mean() ** 0.5)}

        @hookimpl
        def register_evaluators(register):
            register(MeanNorm)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EMBSTORE_PLUGINS", "team_eval")
    catalogue(reload=True)
    listing = CliRunner().invoke(cli, ["plugins", "--json"]).stdout
    assert {"name": "team_eval", "evaluators": ["mean_norm"]}.items() <= next(
        p for p in json.loads(listing) if p["name"] == "team_eval").items()
    v = store.publish("items", clustered_embeddings(), promote="prod", evaluate=["mean_norm:ids=[5,6]"],
                      gates=["mean_norm>=1"])
    assert v.aliases == ("prod",) and store.resolve("items@1").metrics["evaluation"]["mean_norm"] > 1


@pytest.mark.slow
def test_node_classification_on_cora(store):
    """Cora's Planetoid split, on a 64-d SVD of the bag-of-words features (no graph used)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    features = sp.load_npz(CORA / "features.npz").astype(np.float64)
    u, s, _ = svds(features, k=64, random_state=0)
    store.publish("cora_svd", Embeddings(ids=np.arange(features.shape[0]), vectors=(u * s).astype(np.float32)),
                  entity="node_id")
    v = store.publish("cora_svd", Embeddings(ids=np.arange(features.shape[0]), vectors=(u * s).astype(np.float32)),
                      entity="node_id", promote="prod", evaluate={"node_classification": {"path": str(CORA / "nodes.csv")}},
                      gates=["accuracy>=0.45"])
    ev = store.resolve(v.ref).metrics["evaluation"]
    assert (ev["nc_train"], ev["nc_test"]) == (140, 1000) and ev["accuracy"] >= 0.45 and 0 < ev["macro_f1"] <= 1


# -- CLI and pipeline files ----------------------------------------------------


def _invoke(home: Path, *args: str):
    return CliRunner().invoke(cli, ["--home", str(home), *args])


@pytest.fixture
def movies(tmp_path: Path) -> tuple[Path, Path]:
    """Planted interactions split leave-last-out: (train file, full file for hit_rate)."""
    from embstore_plugins.evaluators import leave_last_out

    full = planted_interactions(users=200, clusters=4, items_per_cluster=10, seed=5)
    train, everything = leave_last_out(full)
    assert len(train) == len(full) - 200
    paths = tmp_path / "train.csv", tmp_path / "full.csv"
    train.to_csv(paths[0], index=False)
    everything.to_csv(paths[1], index=False)
    return paths


def test_cli_run_with_gates_and_evaluate_command(home, movies):
    train, full = movies
    assert _invoke(home, "init").exit_code == 0
    base = ["run", "item2vec", "--set", "items", "--input", f"interactions={train}", "--config", "dim=8",
            "--config", "epochs=3", "--promote", "prod", "--evaluate", f"hit_rate:path={full},k=10"]
    ok = _invoke(home, *base, "--gate", "hr@10>=0.05")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == "items@1"
    failed = _invoke(home, *base, "--config", "seed=1", "--gate", "hr@10>=0.99")
    assert failed.exit_code == 1
    line = failed.output.strip()
    assert line.startswith("error: items@2 failed its quality gate(s): hr@10 = ") and "\n" not in line
    assert "threshold >= 0.99: fails" in line and "items@prod still points at items@1" in line
    # evaluate an existing version again, with a gate it passes, and promote it
    again = _invoke(home, "evaluate", "items@2", "--evaluate", f"hit_rate:path={full},k=20", "--gate", "hr@20>=0.05",
                    "--promote", "prod", "--json")
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    assert result["aliases"] == ["prod"] and result["gates"]["passed"] is True and "hr@20" in result["evaluation"]
    bad = _invoke(home, "evaluate", "items@1", "--evaluate", "nope")
    assert bad.exit_code == 1 and "unknown evaluator 'nope'" in bad.output


def test_pipeline_file_builds_gates_and_composes(home, movies, tmp_path):
    train, full = movies
    pipeline = tmp_path / "jobs" / "nightly.yaml"
    pipeline.parent.mkdir()
    pipeline.write_text(textwrap.dedent(f"""
        sets:
          - set: items_a
            producer: item2vec
            inputs: {{interactions: ../train.csv}}
            config: {{dim: 8, epochs: 3}}
            align_to: prod
            evaluate:
              hit_rate: {{path: ../full.csv, k: 10}}
              drift: {{alias: prod}}
            gates: ["hr@10>=0.05"]
            promote: prod
          - set: items_b
            producer: item2vec
            inputs: {{interactions: {train}}}
            config: {{dim: 4, epochs: 3, window: 2, seed: 1}}
            promote: prod
          - set: items_ab
            compose: [items_a@prod, items_b@prod]
            weights: [1.0, 0.5]
            promote: prod
    """))
    assert _invoke(home, "init").exit_code == 0
    check = _invoke(home, "pipeline", str(pipeline), "--check")
    assert check.exit_code == 0, check.output
    assert "ok  items_a: producer item2vec, gates hr@10>=0.05 -> prod" in check.stdout
    first = _invoke(home, "pipeline", str(pipeline))
    assert first.exit_code == 0, first.output
    assert first.stdout.split() == ["items_a@1", "items_b@1", "items_ab@1"]
    second = _invoke(home, "pipeline", str(pipeline), "--json")
    assert [json.loads(line)["refs"] for line in second.stdout.splitlines()] == [["items_a@2"], ["items_b@2"], ["items_ab@2"]]
    from embstore.store import EmbeddingStore

    s = EmbeddingStore(home, progress=False)
    a2 = s.resolve("items_a@prod")
    assert (a2.number, a2.aligned_to) == (2, "items_a@1") and "drift_overlap@10" in a2.metrics["evaluation"]
    assert s.resolve("items_ab@2").config["sources"] == ["items_a@2", "items_b@2"] and s.resolve("items_ab@2").dim == 12
    s.close()

    pipeline.write_text(pipeline.read_text().replace("hr@10>=0.05", "hr@10>=0.99"))
    failed = _invoke(home, "pipeline", str(pipeline))
    assert failed.exit_code == 1 and failed.stdout.strip() == ""  # stops at the first step
    assert "error: items_a: items_a@3 failed its quality gate(s): hr@10 = " in failed.output
    s = EmbeddingStore(home, progress=False)
    assert s.resolve("items_a@prod").number == 2 and [v.number for v in s.versions("items_b")] == [1, 2]
    s.close()


@pytest.mark.parametrize(
    "body, message",
    [
        ("sets:\n  - set: x\n    producer: item2vec\n    inputs: {interactions: train.csv}\n    colour: red\n",
         "sets.0.colour: Extra inputs are not permitted"),
        ("sets:\n  - set: x\n    producer: item2vec\n    compose: [a@1, b@1]\n", "exactly one of 'producer'"),
        ("sets:\n  - set: x\n    producer: item2vec\n    inputs: {interactions: train.csv}\n    evaluate: {nope: {}}\n",
         "step 1 (x): unknown evaluator 'nope'"),
        ("sets:\n  - set: x\n    producer: item2vec\n    inputs: {interactions: train.csv}\n    config: {dims: 3}\n",
         "step 1 (x): producer 'item2vec' config: unknown key 'dims'"),
        ("sets:\n  - set: x\n    producer: item2vec\n    inputs: {interactions: nothere.csv}\n", "nothere.csv"),
        ("sets:\n  - set: x\n    producer: item2vec\n    inputs: {interactions: train.csv}\n    gates: [hr]\n",
         "not METRIC>=NUMBER"),
        ("sets: [\n", "not valid YAML"),
    ],
)
def test_invalid_pipeline_files_run_nothing(home, movies, tmp_path, body, message):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(body)
    assert _invoke(home, "init").exit_code == 0
    result = _invoke(home, "pipeline", str(pipeline))
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.startswith("error: ")
    from embstore.store import EmbeddingStore

    s = EmbeddingStore(home, progress=False)
    assert s.sets() == []
    s.close()
