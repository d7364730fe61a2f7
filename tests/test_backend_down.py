"""Backend down: the team backend pointed at throwaway PostgreSQL and Redis servers (our own,
on free ports; the machine's servers are never touched). Stopping either one in the middle
of a publish gives one clear EmbstoreError line (also through the CLI, never a traceback),
and when the server returns the store recovers by itself: the interrupted version ends up
failed, a new publish succeeds, aliases serve, gc cleans up and the checker finds nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import embstore.versions.publishing as publishing_module
from conftest import clustered_embeddings
from embstore.cli import cli
from embstore.ops.consistency import check_store
from embstore.errors import EmbstoreError, PublishError
from embstore.store import EmbeddingStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temp dir, run as the postgres OS user, trust auth."""

    def __init__(self):
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="embstore-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    def init(self) -> "ThrowawayPostgres":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


class ThrowawayRedis:
    """A private redis-server; ``stop`` saves a snapshot that ``start`` loads (a clean restart)."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="embstore-redis-"))
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"throwaway redis on port {self.port} did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        import redis

        try:
            redis.Redis(port=self.port).shutdown(save=True)
        except redis.ConnectionError:
            pass  # the connection drops as the server exits
        self.proc.wait(timeout=30)
        self.proc = None

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def servers():
    if _pg_bin() is None or shutil.which("redis-server") is None or shutil.which("runuser") is None:
        reason = "needs PostgreSQL server binaries, redis-server and runuser to start throwaway servers"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires the backend-down tests: {reason}")
        pytest.skip(reason)
    pg, rd = ThrowawayPostgres(), ThrowawayRedis()
    try:
        pg.init().start()
        rd.start()
        yield pg, rd
    finally:
        rd.destroy()
        pg.destroy()


@pytest.fixture
def team(servers, tmp_path):
    """A team store on the throwaway servers; both servers are up again afterwards."""
    pg, rd = servers
    home = tmp_path / "home"
    tag = uuid.uuid4().hex[:10]  # own schemas and Feast project: tests share the throwaway servers
    store = EmbeddingStore.init(home, progress=False, backend="team", postgres_url=pg.url, redis_url=rd.url,
                                schema=f"t_{tag}", project=f"p_{tag}")
    try:
        yield store, pg, rd, home
    finally:
        if not pg.running():
            pg.start()
        if rd.proc is None:
            rd.start()
        store.close()


def _stop_at(monkeypatch, step: str, stop) -> None:
    """Stop a server right after ``step`` of the next publish (the crash tests' hook, in-process)."""
    real = publishing_module.fault_after

    def hook(done: str) -> None:
        real(done)
        if done == step:
            stop()

    monkeypatch.setattr(publishing_module, "fault_after", hook)


def _one_clean_line(exc: BaseException) -> str:
    assert isinstance(exc, EmbstoreError), f"{type(exc).__name__}: {exc}"
    text = str(exc)
    assert text and len(text.splitlines()) == 1, text
    return text


def _cli(home: Path, *args: str):
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    assert "Traceback" not in result.output
    return result


def _cli_error(home: Path, *args: str) -> str:
    result = _cli(home, *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "--debug for the traceback" not in lines[0], f"not an EmbstoreError: {lines[0]}"
    return lines[0]


def test_redis_down_mid_publish_then_recovers(team, monkeypatch):
    store, pg, rd, home = team
    first = clustered_embeddings(seed=1)
    store.publish("items", first, promote="prod")

    _stop_at(monkeypatch, "feast_apply", rd.stop)  # Redis goes away just before the online write
    with pytest.raises(PublishError) as err:
        store.publish("items", clustered_embeddings(seed=2), promote="prod")
    message = _one_clean_line(err.value)
    assert "items@2" in message and "Redis" in message and "unreachable" in message, message
    monkeypatch.undo()
    v2 = store.registry.version("items", 2)
    assert v2.status == "failed"

    # while Redis is down: recall and vectors (FAISS + files) still serve the alias; online reads fail clearly
    assert store.resolve("items@prod").number == 1
    np.testing.assert_array_equal(store.vectors("items@prod", [4]).matrix[0], first.vectors[4])
    assert store.recall("items@prod", ids=[4], k=3)[0].ids
    with pytest.raises(EmbstoreError) as err:
        store.online_vectors("items@prod", [4])
    assert "Redis" in _one_clean_line(err.value)
    assert _cli(home, "recall", "items@prod", "--id", "4", "-k", "3").exit_code == 0
    assert "Redis" in _cli_error(home, "gc")

    rd.start()  # back (with its data): everything works again without repair
    np.testing.assert_array_equal(store.online_vectors("items@prod", [4])[0], first.vectors[4])
    third = clustered_embeddings(seed=3)
    assert store.publish("items", third, promote="prod").number == 3
    np.testing.assert_array_equal(store.online_vectors("items@prod", [4])[0], third.vectors[4])
    assert store.gc() == ["items@2"]
    report = check_store(store)
    assert report.ok, [f.line() for f in report.inconsistencies]


def _online_rows_of(rd, project: str, view: str) -> int:
    """Redis hashes of ``project`` holding a row of feature view ``view`` (Feast's layout: one hash
    per entity key, a ``_ts:<view>`` field per view with a row there)."""
    import redis

    client = redis.Redis(port=rd.port)
    field = f"_ts:{view}".encode()
    return sum(client.hexists(k, field) for k in client.scan_iter(b"*" + project.encode()))


def test_gc_while_redis_is_down_strands_no_online_rows(team, monkeypatch):
    store, pg, rd, home = team
    store.publish("items", clustered_embeddings(seed=1), promote="prod")
    def fail() -> None:
        raise RuntimeError("the build dies after its online write")

    _stop_at(monkeypatch, "online", fail)
    with pytest.raises(PublishError):
        store.publish("items", clustered_embeddings(seed=2), promote="prod")
    monkeypatch.undo()
    assert store.registry.version("items", 2).status == "failed"
    project = store.settings.project
    assert _online_rows_of(rd, project, "items__v2") == 100  # the failed version's rows are in Redis

    rd.stop()
    assert "Redis" in _cli_error(home, "gc")
    rd.start()
    assert store.gc() == ["items@2"]
    assert _online_rows_of(rd, project, "items__v2") == 0
    assert _online_rows_of(rd, project, "items__v1") == 100  # the serving version keeps its rows
    report = check_store(store)
    assert report.ok, [f.line() for f in report.inconsistencies]


def test_postgres_down_mid_publish_then_recovers(team, monkeypatch):
    store, pg, rd, home = team
    first = clustered_embeddings(seed=1)
    store.publish("items", first, promote="prod")

    _stop_at(monkeypatch, "files", pg.stop)  # the registry goes away in the middle of the publish
    with pytest.raises(EmbstoreError) as err:
        store.publish("items", clustered_embeddings(seed=2), promote="prod")
    message = _one_clean_line(err.value)
    assert "items@2" in message and "unreachable" in message and str(pg.port) in message, message
    monkeypatch.undo()

    with pytest.raises(EmbstoreError) as err:  # reads need the registry: a clear error, no traceback
        store.recall("items@prod", ids=[1], k=3)
    assert "unreachable" in _one_clean_line(err.value)
    with pytest.raises(EmbstoreError):
        store.publish("items", clustered_embeddings(seed=3), promote="prod")
    for args in (("versions", "items"), ("recall", "items@prod", "--id", "1"), ("gc",), ("check",)):
        assert str(pg.port) in _cli_error(home, *args)

    pg.start()  # back: the same long-lived store object carries on without repair
    assert store.resolve("items@prod").number == 1
    np.testing.assert_array_equal(store.vectors("items@prod", [4]).matrix[0], first.vectors[4])
    v = store.publish("items", clustered_embeddings(seed=4), promote="prod")
    statuses = {x.number: x.status for x in store.versions("items")}
    assert statuses[1] == "published" and statuses[2] == "failed" and statuses[v.number] == "published"
    assert "building" not in statuses.values(), statuses
    assert store.resolve("items@prod").number == v.number
    assert store.rollback("items", "prod").number == 1
    assert "items@2" in store.gc()
    report = check_store(store)
    assert report.ok, [f.line() for f in report.inconsistencies]
    assert _cli(home, "check").exit_code == 0


def test_postgres_restart_under_an_idle_store(team):
    """Pooled connections die with the server (immediate stop, like a crash); the next calls reconnect."""
    store, pg, rd, home = team
    store.publish("items", clustered_embeddings(seed=1), promote="prod")
    pg.stop("immediate")
    pg.start()
    assert store.resolve("items@prod").number == 1
    assert store.publish("items", clustered_embeddings(seed=2), promote="prod").number == 2
    assert check_store(store).ok
