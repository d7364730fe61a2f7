"""`embstore doctor` says what works and exactly what does not."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from conftest import POSTGRES_URL, REDIS_URL, drop_team_store, team_settings
from embstore.cli import cli
from embstore.store import EmbeddingStore


def test_doctor_on_the_embedded_default(home):
    EmbeddingStore.init(home, progress=False).close()
    result = CliRunner().invoke(cli, ["--home", str(home), "doctor"])
    assert result.exit_code == 0, result.output
    assert "ok    version registry: sqlite:///" in result.output and "FAIL" not in result.output


def test_doctor_names_an_unreachable_redis_and_postgres(home, team_available):
    store = EmbeddingStore.init(home, progress=False, **team_settings())
    try:
        ok = CliRunner().invoke(cli, ["--home", str(home), "doctor"])
        assert ok.exit_code == 0, ok.output
        assert "Redis at 127.0.0.1:6379 answers" in ok.output
        path = home / "embstore.yaml"
        good = path.read_text()
        settings = yaml.safe_load(good)
        settings["redis_url"] = "redis://127.0.0.1:1/0"
        settings["postgres_url"] = POSTGRES_URL.replace(":5432/", ":1/")
        path.write_text(yaml.safe_dump(settings))
        bad = CliRunner().invoke(cli, ["--home", str(home), "doctor"])
        assert bad.exit_code == 1
        lines = bad.output.splitlines()
        assert any(l.startswith("FAIL  online store: Redis at 127.0.0.1:1 unreachable") for l in lines), bad.output
        assert any(l.startswith("FAIL  version registry: cannot connect to postgresql") and ":1/" in l for l in lines)
        path.write_text(good)
    finally:
        drop_team_store(store)


def test_init_with_postgres_and_redis_switches_backend(home, team_available):
    settings = team_settings()
    result = CliRunner().invoke(cli, ["--home", str(home), "init", "--postgres", POSTGRES_URL, "--redis", REDIS_URL,
                                      "--schema", settings["schema"], "--project", settings["project"]])
    assert result.exit_code == 0, result.output
    store = EmbeddingStore(home, progress=False)
    try:
        assert store.settings.backend == "team" and store.registry.engine.dialect.name == "postgresql"
    finally:
        drop_team_store(store)
