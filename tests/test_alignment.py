"""Alignment onto a reference version (orthogonal Procrustes) and drift reports between versions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import clustered_embeddings
from embstore.versions.alignment import AlignmentError, procrustes
from embstore.cli import cli
from embstore.demo_data import planted_interactions
from embstore.embeddings import Embeddings
from embstore.errors import NotFoundError


def _rotation(dim: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q


def _retrained(base: Embeddings, seed: int = 7, noise: float = 0.05, drop: int = 0, add: int = 0) -> Embeddings:
    """What a retrain looks like: the same geometry in rotated coordinates, a little noise,
    some ids gone (the first ``drop``) and some new ones (``add``, ids from 1000)."""
    rng = np.random.default_rng(seed)
    vecs = base.vectors @ _rotation(base.dim, seed) + rng.normal(scale=noise, size=base.vectors.shape)
    ids, vecs = base.ids[drop:], vecs[drop:]
    if add:
        ids = np.concatenate([ids, np.arange(1000, 1000 + add)])
        vecs = np.vstack([vecs, rng.normal(size=(add, base.dim)) * 3])
    return Embeddings(ids=ids, vectors=vecs.astype(np.float32))


def test_procrustes_recovers_a_rotation():
    x = np.random.default_rng(0).normal(size=(50, 8))
    q = _rotation(8, 1)
    r = procrustes(x, x @ q)
    np.testing.assert_allclose(r, q, atol=1e-10)
    np.testing.assert_allclose(r @ r.T, np.eye(8), atol=1e-10)


def test_align_to_prev_rotates_onto_the_reference_and_records_it(store):
    base = clustered_embeddings()
    store.publish("items", base, promote="prod")
    new = _retrained(base, drop=5, add=3)
    v2 = store.publish("items", new, align_to="prev")
    assert v2.aligned_to == "items@1"
    report = v2.metrics["alignment"]
    assert report["reference"] == "items@1" and report["shared_ids"] == 95
    assert report["residual_before"] > 1.0 > 0.1 > report["residual_after"]
    assert report["mean_cosine_after"] > 0.99 > report["mean_cosine_before"]
    # shared ids now sit where the reference put them
    got = store.vectors("items@2", [10, 50]).matrix
    np.testing.assert_allclose(got, base.vectors[[10, 50]], atol=0.25)
    # a rotation changes no distance inside the version: neighbours are as trained
    [aligned] = store.recall("items@2", ids=[10], k=5)
    store.publish("raw", new)
    [raw] = store.recall("raw", ids=[10], k=5)
    assert aligned.ids == raw.ids
    np.testing.assert_allclose(aligned.scores, raw.scores, atol=1e-5)
    assert store.versions("items")[0].aligned_to is None


def test_align_to_an_alias_number_or_full_ref(store):
    base = clustered_embeddings()
    store.publish("items", base, promote="prod")
    store.publish("items", clustered_embeddings(seed=5))
    assert store.publish("items", _retrained(base), align_to="prod").aligned_to == "items@1"
    assert store.publish("items", _retrained(base), align_to="2").aligned_to == "items@2"
    store.publish("other", base)
    assert store.publish("items", _retrained(base), align_to="other@1").aligned_to == "other@1"


def test_first_version_has_nothing_to_align_to(store):
    v = store.publish("items", clustered_embeddings(), align_to="prod")
    assert v.aligned_to is None and "no published version" in v.metrics["alignment"]["skipped"]
    np.testing.assert_array_equal(store.vectors("items", [3]).matrix[0], clustered_embeddings().vectors[3])


def test_alignment_errors_store_nothing(store):
    store.publish("items", clustered_embeddings(), promote="prod")
    with pytest.raises(AlignmentError, match="dimension 16, the new vectors have dimension 8"):
        store.publish("items", clustered_embeddings(dim=8), align_to="prod")
    few = Embeddings(ids=np.arange(90, 190), vectors=clustered_embeddings().vectors)  # 10 shared ids, dim 16
    with pytest.raises(AlignmentError, match="only 10 ids are shared with it, need at least 16"):
        store.publish("items", few, align_to="prev")
    with pytest.raises(NotFoundError, match="no alias 'canary'"):
        store.publish("items", clustered_embeddings(), align_to="canary")
    assert [v.number for v in store.versions("items")] == [1]


def test_diff_reports_drift_and_stores_it_in_the_newer_version(any_store):
    store = any_store
    base = clustered_embeddings()
    store.publish("items", base)
    store.publish("items", _retrained(base, noise=0.01, drop=4, add=6))
    report = store.diff("items@2", "items@1", k=5, sample=50)  # either order; stored in the newer
    assert (report["from"], report["to"], report["shared_ids"]) == ("items@2", "items@1", 96)
    assert (report["ids_added"], report["ids_removed"]) == (4, 6)
    assert report["added"] == [0, 1, 2, 3] and report["removed"] == [1000, 1001, 1002, 1003, 1004, 1005]
    assert report["mean_cosine"] > 0.99 and report["mean_cosine_raw"] < 0.5  # a rotation apart, little else
    assert report["k"] == 5 and report["sample"] == 50 and report["neighbour_overlap"] > 0.6
    assert report["stored_in"] == "items@2"
    stored = store.resolve("items@2").metrics["drift"]["items@1"]
    assert stored["neighbour_overlap"] == report["neighbour_overlap"]
    assert "drift" not in store.resolve("items@1").metrics
    np.testing.assert_array_equal(store.vectors("items@2", [10]).matrix[0],
                                  _retrained(base, noise=0.01, drop=4, add=6).vectors[6])  # vectors unchanged


def test_diff_of_unrelated_versions_and_across_dimensions(store):
    store.publish("items", clustered_embeddings(seed=1))
    store.publish("items", clustered_embeddings(seed=2, dim=8))
    report = store.diff("items@1", "items@2", save=False)
    assert report["mean_cosine"] is None and report["dims"] == [16, 8]
    assert 0 <= report["neighbour_overlap"] <= 1  # neighbour lists compare across dimensions
    assert "stored_in" not in report and "drift" not in store.resolve("items@2").metrics


def test_cli_diff_and_run_align_to(home, tmp_path):
    runner = CliRunner()
    path = tmp_path / "interactions.csv"
    planted_interactions(users=150, clusters=4, items_per_cluster=10, seed=3).to_csv(path, index=False)

    def invoke(*args):
        return runner.invoke(cli, ["--home", str(home), *args], catch_exceptions=False)

    assert invoke("init").exit_code == 0
    common = ["run", "item2vec", "--set", "items", "--input", f"interactions={path}",
              "--config", "dim=8", "--config", "epochs=3", "--align-to", "prod", "--promote", "prod"]
    assert invoke(*common).stdout.strip() == "items@1"
    second = invoke(*common, "--config", "seed=3", "--json")
    assert second.exit_code == 0, second.output
    v2 = json.loads(second.stdout)
    assert v2["aligned_to"] == "items@1" and v2["metrics"]["alignment"]["residual_after"] < v2["metrics"]["alignment"]["residual_before"]

    listing = invoke("versions", "items").stdout.splitlines()
    assert listing[1].split()[0] == "1" and "aligned to" not in listing[1]
    assert listing[2].split()[0] == "2" and listing[2].endswith("prod  (aligned to items@1)")

    text = invoke("diff", "items@1", "items@2")
    assert text.exit_code == 0, text.output
    assert "items@1 -> items@2" in text.stdout and "40 shared, 0 added, 0 removed" in text.stdout
    assert "neighbour overlap" in text.stdout and "stored in the metrics of items@2" in text.stdout
    as_json = json.loads(invoke("diff", "items@1", "items@prod", "--json", "-k", "3", "--no-save").stdout)
    assert as_json["to"] == "items@2" and as_json["k"] == 3 and as_json["mean_cosine"] > as_json["mean_cosine_raw"] - 1e-6
    bad = runner.invoke(cli, ["--home", str(home), "diff", "items@1", "items@9"])
    assert bad.exit_code == 1 and bad.output.strip() == "error: items@9 does not exist"
