"""Feast consumers as Feast intends: the repo opens with plain Feast (embstore not importable),
every alias is a FeatureService that follows promote and rollback, `feast plan` / `feast apply`
in the repo change nothing, and `embstore check` finds and repairs services that disagree."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from conftest import clustered_embeddings
from embstore.cli import cli
from embstore.ops.consistency import check_store
from embstore.store import EmbeddingStore

WITHOUT_EMBSTORE = ("import sys\n"
                    "for name in ('embstore', 'embstore_feature_repo', 'embstore_plugins', 'embstore_migrations'):\n"
                    "    sys.modules[name] = None  # as if embstore were not installed\n")


def plain_feast(repo, code: str) -> str:
    """Run ``code`` in a fresh Python that can import Feast but not embstore; its stdout."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_EMBSTORE + textwrap.dedent(code)], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _publish_two(store):
    v1 = store.publish("items", clustered_embeddings(seed=1), promote="prod")
    v2 = store.publish("items", clustered_embeddings(seed=2))
    return v1, v2


def _served(store, service: str, ids) -> np.ndarray:
    fs = store.feast.store
    fs.refresh_registry()  # a long-lived Feast client sees a move within cache_ttl_seconds (10), or now
    rows = fs.get_online_features(features=fs.get_feature_service(service), entity_rows=[{"item_id": i} for i in ids])
    return np.asarray(rows.to_dict()["embedding"], dtype=np.float32)


def test_each_alias_is_a_feature_service_that_follows_promote_and_rollback(any_store):
    v1, v2 = _publish_two(any_store)
    ids = [0, 7, 42]
    np.testing.assert_array_equal(_served(any_store, "items__prod", ids), any_store.vectors(v1, ids).matrix)
    any_store.promote(v2.ref, "prod")
    np.testing.assert_array_equal(_served(any_store, "items__prod", ids), any_store.vectors(v2, ids).matrix)
    any_store.promote(v1.ref, "canary")
    assert [p.name for p in any_store.feast.store.get_feature_service("items__canary").feature_view_projections] \
        == ["items__v1"]
    any_store.rollback("items", "prod")
    np.testing.assert_array_equal(_served(any_store, "items__prod", ids), any_store.vectors(v1, ids).matrix)
    assert check_store(any_store).ok


def test_the_repo_serves_plain_feast_and_feast_plan_and_apply_change_nothing(any_store):
    v1, v2 = _publish_two(any_store)
    repo = any_store.feast.repo
    assert "registry_store_type" not in (repo / "feature_store.yaml").read_text()  # no class of embstore's
    out = plain_feast(repo, """
        import contextlib, io, json
        from feast import FeatureStore
        from feast.cli.cli import cli
        fs = FeatureStore(repo_path=".")
        views = {fv.name: [f.name for f in fv.features] for fv in fs.list_feature_views()}
        online = fs.get_online_features(features=fs.get_feature_service("items__prod"),
                                        entity_rows=[{"item_id": 3}]).to_dict()
        said = {}
        for command in ("plan", "apply", "plan"):
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                cli.main(args=[command], standalone_mode=False)
            said.setdefault(command, []).append(printed.getvalue())
        print(json.dumps({"views": views, "services": [s.name for s in fs.list_feature_services()],
                          "vector": online["embedding"][0], "said": said}))
    """)
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["views"] == {"items__v1": ["embedding"], "items__v2": ["embedding"]}  # no internal row column
    assert seen["services"] == ["items__prod"]
    np.testing.assert_array_equal(np.float32(seen["vector"]), any_store.vectors(v1, [3]).matrix[0])
    for plan in seen["said"]["plan"]:
        assert "No changes to registry" in plan and "No changes to infrastructure" in plan, plan
    assert sorted(any_store.feast.feature_view_names()) == ["items__v1", "items__v2"]  # apply deleted nothing
    assert check_store(any_store).ok


def test_check_finds_a_service_that_disagrees_and_repair_mends_it(store):
    v1, v2 = _publish_two(store)
    store.feast.store.delete_feature_service("items__prod")
    report = check_store(store)
    assert any("feature service items__prod serves None" in f.message for f in report.inconsistencies)
    result = CliRunner().invoke(cli, ["--home", str(store.home), "check", "--repair"])
    assert result.exit_code == 0, result.output
    assert "applied service:items__prod" in result.output and "ok: " in result.output
    np.testing.assert_array_equal(_served(store, "items__prod", [1]), store.vectors(v1, [1]).matrix)


def test_a_home_of_embstore_0_1_moves_to_feasts_sql_registry_on_open(home):
    """0.1 kept Feast's registry in a file through embstore's own store class; opening such a
    home renders a feature_store.yaml plain Feast can read and fills the new registry from
    embstore's, online rows untouched."""
    store = EmbeddingStore.init(home, progress=False)
    v1, _ = _publish_two(store)
    store.close()
    repo = home / "feature_repo"
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["registry"] = {"path": str(repo / "data" / "registry.db"),
                          "registry_store_type": "embstore.feast_store.AtomicFileRegistryStore"}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    (repo / "data" / "feast_registry.db").unlink()
    (repo / "embstore_objects.json").unlink()
    reopened = EmbeddingStore(home, progress=False)
    assert sorted(reopened.feast.feature_view_names()) == ["items__v1", "items__v2"]
    assert reopened.online_vectors("items@prod", [5])[0] == pytest.approx(reopened.vectors(v1, [5]).matrix[0].tolist())
    assert "registry_store_type" not in (repo / "feature_store.yaml").read_text()
    assert check_store(reopened).ok
    reopened.close()
