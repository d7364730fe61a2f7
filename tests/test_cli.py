"""The CLI contract that jobs rely on: commands, output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from embstore.cli import cli
from embstore.demo_data import planted_interactions


@pytest.fixture
def interactions(tmp_path: Path) -> Path:
    path = tmp_path / "interactions.csv"
    planted_interactions(users=300, clusters=6, items_per_cluster=20, seed=3).to_csv(path, index=False)
    return path


def invoke(home: Path, *args: str):
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def test_init_run_versions_promote_rollback_export_recall(home, interactions, tmp_path):
    assert invoke(home, "init").exit_code == 0
    run = invoke(home, "run", "item2vec", "--set", "demo_items", "--input", f"interactions={interactions}",
                 "--config", "epochs=5", "--config", "dim=16", "--promote", "prod")
    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == "demo_items@1"
    run2 = invoke(home, "run", "item2vec", "--set", "demo_items", "--input", f"interactions={interactions}",
                  "--config", "epochs=5", "--config", "dim=16", "--config", "seed=2")
    assert run2.stdout.strip() == "demo_items@2"

    versions = invoke(home, "versions", "demo_items", "--json")
    rows = json.loads(versions.stdout)
    assert [(r["number"], r["status"], r["aliases"]) for r in rows] == [(1, "published", ["prod"]), (2, "published", [])]
    assert rows[0]["producer"] == "item2vec" and rows[0]["config"]["dim"] == 16 and rows[0]["input_fingerprint"]

    assert invoke(home, "promote", "demo_items@2", "prod").output.strip() == "demo_items@prod -> demo_items@2"
    assert invoke(home, "rollback", "demo_items", "prod").output.strip() == "demo_items@prod -> demo_items@1"

    out = tmp_path / "export.parquet"
    assert invoke(home, "export", "demo_items@prod", str(out)).exit_code == 0
    table = pq.read_table(out)
    assert table.column_names == ["id", "vector"] and table.num_rows == 120

    rec = invoke(home, "recall", "demo_items@prod", "--id", "c2_i5", "-k", "5", "--json")
    payload = json.loads(rec.stdout)
    assert payload["ref"] == "demo_items@1"
    [result] = payload["results"]
    assert result["query"] == "c2_i5" and len(result["ids"]) == 5
    assert sum(i.startswith("c2_") for i in result["ids"]) >= 4  # the planted cluster is found


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nosuch", "--set", "s", "--input", "interactions=X"], "unknown producer 'nosuch'"),
        (["run", "item2vec", "--set", "s", "--input", "interactions=INTER", "--config", "bogus=1"], "unknown key 'bogus'"),
        (["run", "item2vec", "--set", "s", "--input", "interactions=INTER", "--config", "dim=zero"], "dim"),
        (["run", "item2vec", "--set", "s", "--input", "interactions=/nonexistent.csv"], "nonexistent.csv"),
        (["recall", "nope@prod", "--id", "1"], "unknown embedding set 'nope'"),
        (["versions", "nope"], "unknown embedding set 'nope'"),
    ],
)
def test_errors_are_one_line_and_nonzero(home, interactions, args, message):
    assert invoke(home, "init").exit_code == 0
    args = [a.replace("INTER", str(interactions)) for a in args]
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.output
    assert "Traceback" not in result.output


def test_home_from_environment_and_missing_home(home, monkeypatch):
    monkeypatch.setenv("EMBSTORE_HOME", str(home))
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0
    assert (home / "embstore.yaml").exists() and (home / "feature_repo" / "feature_store.yaml").exists()
    monkeypatch.delenv("EMBSTORE_HOME")
    result = CliRunner().invoke(cli, ["versions", "x"])
    assert result.exit_code == 1 and "--home" in result.output


def test_plugins_lists_builtins_with_versions():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["item2vec"]["producers"] == ["item2vec"]
    assert plugins["faiss"]["retrievers"] == ["faiss"]
    assert plugins["item2vec"]["version"] == plugins["faiss"]["version"] != ""
    assert plugins["item2vec"]["source"] == "entry point"
    assert plugins["graphsage"]["infer"] == ["graphsage"] and plugins["item2vec"]["infer"] == []
    text = CliRunner().invoke(cli, ["plugins"]).output
    assert "producer:eges (infer)" in text and "producer:item2vec " in text


def test_real_process_exit_codes_and_debug(home, cli_env):
    """Through the installed console script, as a scheduled job runs it."""
    exe = Path(sys.executable).with_name("embstore")
    ok = subprocess.run([str(exe), "init"], env=cli_env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([str(exe), "recall", "nope", "--id", "1"], env=cli_env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == ["error: unknown embedding set 'nope' (sets: none yet)"]
    debug = subprocess.run([str(exe), "--debug", "recall", "nope", "--id", "1"], env=cli_env, capture_output=True,
                           text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_producer_named_only_in_the_plugins_setting_works_for_every_command(home, interactions, tmp_path):
    """HOME/embstore.yaml's ``plugins:`` loads its modules in every command, before anything
    looks a producer up (it used to reach the loader only after `run` had refused the name)."""
    (tmp_path / "my_dev_plugin.py").write_text(
        "import numpy as np\n"
        "from embstore import Embeddings, Producer, hookimpl\n\n"
        "class MyDevProducer(Producer):\n"
        "    name = 'my_dev_producer'\n"
        "    requires = frozenset({'interactions'})\n\n"
        "    def fit(self, inputs, config):\n"
        "        items = np.unique(inputs.interactions()['item_id'].to_numpy())\n"
        "        return Embeddings(ids=items, vectors=np.random.default_rng(0).normal(size=(len(items), 4)))\n\n"
        "@hookimpl\n"
        "def register_producers(register):\n"
        "    register(MyDevProducer)\n"
    )
    assert invoke(home, "init").exit_code == 0
    with open(home / "embstore.yaml", "a") as fh:
        fh.write("plugins: [my_dev_plugin]\n")
    (tmp_path / "nightly.yaml").write_text(
        f"sets:\n  - set: dev_items\n    producer: my_dev_producer\n    inputs: {{interactions: {interactions}}}\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path), "EMBSTORE_HOME": str(home)}
    env.pop("EMBSTORE_PLUGINS", None)

    def embstore(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "embstore.cli", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    listed = json.loads(embstore("plugins", "--json").stdout)
    assert {"name": "my_dev_plugin", "source": "plugins setting", "producers": ["my_dev_producer"]}.items() <= \
        next(p for p in listed if p["name"] == "my_dev_plugin").items()
    run = embstore("run", "my_dev_producer", "--set", "dev_items", "--input", f"interactions={interactions}")
    assert run.returncode == 0 and run.stdout.strip() == "dev_items@1", run.stderr
    check = embstore("pipeline", str(tmp_path / "nightly.yaml"), "--check")
    assert check.returncode == 0 and "ok  dev_items: producer my_dev_producer" in check.stdout, check.stderr
    assert embstore("pipeline", str(tmp_path / "nightly.yaml")).stdout.strip() == "dev_items@2"


def test_recall_prints_metadata_beside_ids(home, interactions, tmp_path):
    assert invoke(home, "init").exit_code == 0
    assert invoke(home, "run", "item2vec", "--set", "items", "--input", f"interactions={interactions}",
                  "--config", "epochs=2", "--config", "dim=8").exit_code == 0
    meta = tmp_path / "items.csv"
    rows = [f"c{c}_i{i},Item {c}-{i},g{c}|all" for c in range(6) for i in range(20) if (c, i) != (2, 7)]
    meta.write_text("itemId,title,genres\n" + "\n".join(rows) + "\n")
    text = invoke(home, "recall", "items", "--id", "c2_i5", "-k", "20", "--metadata", f"{meta}:itemId")
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0] == "c2_i5 (items@1):  Item 2-5  genres: g2|all"
    neighbours = lines[1:]
    assert len(neighbours) == 20
    for line in neighbours:
        item = line.split()[1]
        c, i = item[1:].split("_i")
        described = "(no metadata)" if item == "c2_i7" else f"Item {c}-{i}  genres: g{c}|all"
        assert line.endswith(f"  {described}"), line
    payload = json.loads(invoke(home, "recall", "items", "--id", "c2_i5", "-k", "3", "--json",
                                "--metadata", f"{meta}:itemId").stdout)
    [result] = payload["results"]
    assert result["query_metadata"] == {"title": "Item 2-5", "genres": "g2|all"}
    assert [m and m["title"] for m in result["metadata"]] == [
        None if i == "c2_i7" else f"Item {i[1]}-{i.split('_i')[1]}" for i in result["ids"]]
    plain = json.loads(invoke(home, "recall", "items", "--id", "c2_i5", "-k", "3", "--json").stdout)
    assert "metadata" not in plain["results"][0]  # unchanged without --metadata
    for bad, message in [(f"{meta}:nope", "has no column 'nope'; columns: itemId, title, genres"),
                         (str(tmp_path / "absent.csv"), "absent.csv not found")]:
        out = CliRunner().invoke(cli, ["--home", str(home), "recall", "items", "--id", "c2_i5", "--metadata", bad])
        assert out.exit_code == 1 and out.output.strip().startswith("error: ") and message in out.output


def test_describe_shows_a_producers_options_as_help_would():
    result = CliRunner().invoke(cli, ["describe", "item2vec"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("Usage: embstore run item2vec --set SET --input KIND=PATH")
    assert "producer item2vec from plugin item2vec" in text and "Inputs:" in text and "requires  interactions" in text
    assert "Options (--config KEY=VALUE):" in text
    flat = " ".join(text.split())  # descriptions wrap at the terminal width
    assert "dim=INTEGER Vector dimension. [default: 64; >=1]" in flat
    assert "window=INTEGER|all Context size:" in flat and "[default: 20; INTEGER >=1]" in flat
    assert "min_rating=FLOAT|null Drop interactions rated below this" in flat
    payload = json.loads(CliRunner().invoke(cli, ["describe", "item2vec", "--json"]).output)
    [d] = payload
    assert (d["name"], d["kind"], d["requires"], d["entity"], d["infer"]) == ("item2vec", "producer", ["interactions"],
                                                                           "item_id", False)
    options = {o["name"]: o for o in d["options"]}
    assert options["dim"] == {"name": "dim", "type": "INTEGER", "constraints": [">=1"], "required": False,
                              "default": 64, "description": "Vector dimension.", "schema": options["dim"]["schema"]}
    assert options["dim"]["schema"]["minimum"] == 1 and options["min_rating"]["default"] is None
    from embstore.catalogue import catalogue

    assert list(options) == list(catalogue().producer("item2vec").Config.model_fields)


def test_describe_works_for_retrievers_and_evaluators_and_names_the_known_ones():
    faiss = CliRunner().invoke(cli, ["describe", "faiss"])
    assert faiss.exit_code == 0 and "Options (--retriever-config KEY=VALUE):" in faiss.output
    assert "metric=[ip|cosine|l2]" in faiss.output and "[default: cosine]" in faiss.output
    hit = " ".join(CliRunner().invoke(cli, ["describe", "hit_rate"]).output.split())
    assert "Options (--evaluate hit_rate:KEY=VALUE,...):" in hit and "path=PATH held-out interactions" in hit
    assert "[required]" in hit and "exclude_seen=BOOLEAN" in hit and "[default: true]" in hit
    eges = json.loads(CliRunner().invoke(cli, ["describe", "eges", "--json"]).output)[0]
    assert eges["infer"] is True and "side_info" in eges["requires"] + eges["accepts"]
    missing = CliRunner().invoke(cli, ["describe", "nope"])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1
    assert missing.output.startswith("error: no producer, retriever, evaluator or engine named 'nope' (producers: ")
    assert "item2vec" in missing.output and "retrievers: faiss" in missing.output
    wrong_kind = CliRunner().invoke(cli, ["describe", "item2vec", "--kind", "retriever"])
    assert wrong_kind.exit_code == 1 and "no retriever named 'item2vec'" in wrong_kind.output
