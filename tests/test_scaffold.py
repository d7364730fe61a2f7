"""`embstore plugin new`: the scaffolded package installs, is discovered, runs and passes the kit.

NOTE: test_scaffolded_producer_installs_runs_and_passes_the_kit pip-installs the
scaffolded package INTO THE RUNNING ENVIRONMENT (sys.executable -m pip; a plain,
non-editable install, so processes already running can import it too) and
uninstalls it in a ``finally``. The name carries the process id, so parallel
runs do not collide. Everything that must see the new entry point runs in a
fresh subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from embstore.cli import cli
from embstore.ops.scaffold import names_for, scaffold
from embstore.testing import make_inputs


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("EMBSTORE_PLUGINS", "EMBSTORE_HOME", "PYTHONPATH")}
    env.update(extra)
    return env


def _run(args: list[str], env: dict | None = None, cwd: Path | None = None, timeout: int = 600):
    return subprocess.run(args, capture_output=True, text=True, env=env or _env(), cwd=cwd, timeout=timeout)


def _embstore(*args: str, env: dict | None = None):
    return _run([sys.executable, "-m", "embstore.cli", *args], env=env)


def _ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def test_scaffolded_producer_installs_runs_and_passes_the_kit(tmp_path):
    name = f"scaffold_probe_{os.getpid()}"
    names = names_for(name)
    out = CliRunner().invoke(cli, ["plugin", "new", name, "--dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    package = tmp_path / names["dist"]
    assert {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", ".gitignore", f"src/{names['module']}/__init__.py", "tests/test_plugin.py",
    }
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    try:
        _ok(_run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-cache-dir", str(package)]))

        listed = {p["name"]: p for p in json.loads(_ok(_embstore("plugins", "--json")))}
        assert listed[name]["producers"] == [name]
        assert (listed[name]["version"], listed[name]["source"]) == ("0.1.0", "entry point")
        assert listed[name]["hooks"] == ["register_producers"]

        home = tmp_path / "home"
        data = make_inputs(tmp_path / "data", ["interactions"])["interactions"]
        _ok(_embstore("--home", str(home), "init"))
        assert _ok(_embstore("--home", str(home), "run", name, "--set", "s", "--input",
                             f"interactions={data}", "--config", "dim=8")).strip() == "s@1"
        [version] = json.loads(_ok(_embstore("--home", str(home), "versions", "s", "--json")))
        assert (version["producer"], version["plugin_version"], version["dim"]) == (name, "0.1.0", 8)
        recall = json.loads(_ok(_embstore("--home", str(home), "recall", "s@1", "--id", "c0_i0", "-k", "5",
                                          "--json")))
        neighbours = recall["results"][0]["ids"]
        assert sum(n.startswith("c0_") for n in neighbours) >= 3  # it learnt the planted clusters

        # the package's own tests: the conformance kit, the entry point, a quality check
        tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package)
        assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout + tests.stderr
    finally:
        _run([*pip, "uninstall", "-y", names["dist"]])
    assert name not in {p["name"] for p in json.loads(_ok(_embstore("plugins", "--json")))}


def test_scaffolded_retriever_works_without_installing(tmp_path):
    package = scaffold("probe_exact", "retriever", tmp_path)
    env = _env(PYTHONPATH=str(package / "src"), EMBSTORE_PLUGINS="embstore_probe_exact")
    listed = {p["name"]: p for p in json.loads(_ok(_embstore("plugins", "--json", env=env)))}
    assert listed["embstore_probe_exact"]["retrievers"] == ["probe_exact"]
    assert listed["embstore_probe_exact"]["source"] == "EMBSTORE_PLUGINS"
    tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], env=env, cwd=package)
    assert tests.returncode == 0 and "1 passed, 1 skipped" in tests.stdout, tests.stdout + tests.stderr
    text = (package / "pyproject.toml").read_text()
    assert '[project.entry-points.embstore]\nprobe_exact = "embstore_probe_exact"' in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["plugin", "new", "Bad Name"], "not usable"),
        (["plugin", "new", "item2vec"], "already installed"),
        (["plugin", "new", "faiss", "--kind", "retriever"], "already installed"),
    ],
)
def test_plugin_new_refuses_bad_names(tmp_path, args, message):
    result = CliRunner().invoke(cli, [*args, "--dir", str(tmp_path)])
    assert result.exit_code == 1 and message in result.output
    assert not any(tmp_path.iterdir())


def test_plugin_new_never_overwrites(tmp_path):
    (tmp_path / "embstore-mine").mkdir()
    (tmp_path / "embstore-mine" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["plugin", "new", "mine", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert [p.name for p in (tmp_path / "embstore-mine").iterdir()] == ["keep.txt"]


def test_names_follow_python_packaging():
    assert names_for("co-visit", "retriever") == {
        "name": "co-visit", "dist": "embstore-co-visit", "module": "embstore_co_visit",
        "cls": "CoVisitRetriever", "kind": "retriever",
    }
