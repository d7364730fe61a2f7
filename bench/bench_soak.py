"""Soak: publish under a 4-way concurrent load for N minutes while publishers are SIGKILLed at
random, then run the consistency checker (registry vs Feast vs files and indexes).

    python bench/bench_soak.py                       # embedded backend, 4 workers, 5 minutes
    python bench/bench_soak.py --minutes 1 --backend team \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379/0
    python bench/bench_soak.py --backend team --minutes 0.5 --seeds 1-8   # one soak per seed, then totals

The driver writes the home's settings and nothing more, so the first workers open a store nobody
has opened yet, all at once, as job hosts starting together do (the registry's schema and
migrations, Feast's registry tables; ``--no-fresh`` creates them first). Each worker is its own
process: it publishes random vectors to one of a few shared sets
(promoting ``prod`` most of the time), reads ``prod`` back (vectors and recall), and now and
then rolls ``prod`` back. The driver kills a random worker (SIGKILL) every few seconds and
starts a new one. At the end the workers stop, the store is reopened (which reaps the
killed publishers' versions), and the checker runs before and after ``gc``.

Prints publishes completed, kills (and how many hit a publish in flight), failed versions,
errors that were not EmbstoreErrors, opening the store included (target 0), and inconsistencies
(target 0); exit status 1 if any inconsistency or unexpected error was found. ``--json`` prints
the figures as JSON; ``--seeds`` runs one soak per seed and prints a line each and the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

SETS = ("soak_a", "soak_b")


# -- worker ---------------------------------------------------------------------


def worker(home: str, wid: int, log: Path, stop: Path, rows: int, dim: int, seed: int) -> None:
    """Publish, read and move aliases until ``stop`` exists; one JSON line per event in ``log``."""
    import numpy as np

    from embstore.embeddings import Embeddings
    from embstore.errors import EmbstoreError
    from embstore.store import EmbeddingStore

    rng = random.Random(seed)
    out = open(log, "a", buffering=1)

    def event(kind: str, **fields) -> None:
        out.write(json.dumps({"t": time.time(), "event": kind, **fields}) + "\n")

    try:
        store = EmbeddingStore(home, progress=False)
        store.feast.store  # import and load Feast before saying ready
    except EmbstoreError as exc:
        event("start_error", error=str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - counted: opening a fresh store must not fail like this
        event("unexpected", set=None, error=f"open: {type(exc).__name__}: {exc}"[:300],
              where=traceback.format_exc().splitlines()[-3][:200])
        return
    event("ready", pid=os.getpid())
    while not stop.exists():
        set_name = rng.choice(SETS)
        n = rng.randint(rows // 2, rows)
        ids = np.arange(n, dtype=np.int64) if rng.random() < 0.5 else np.arange(n, dtype=np.int64) * 7 + 3
        vectors = np.random.default_rng(rng.getrandbits(32)).normal(size=(n, dim)).astype(np.float32)
        promote = "prod" if rng.random() < 0.8 else None
        event("begin", set=set_name)
        try:
            v = store.publish(set_name, Embeddings(ids=ids, vectors=vectors), promote=promote,
                              producer="soak", entity="soak_id")
            event("published", set=set_name, number=v.number)
        except EmbstoreError as exc:
            event("failed", set=set_name, error=str(exc).splitlines()[0][:300])
        except Exception as exc:  # noqa: BLE001 - counted: the target is zero of these
            event("unexpected", set=set_name, error=f"{type(exc).__name__}: {exc}"[:300],
                  where=traceback.format_exc().splitlines()[-3][:200])
        try:  # read what prod serves, and sometimes move it back
            prod = store.resolve(f"{set_name}@prod")
            got = store.vectors(prod.ref, [int(ids[0])], allow_missing=True)
            if got.ids:
                store.recall(prod.ref, ids=got.ids, k=5)
            if rng.random() < 0.1:
                store.rollback(set_name, "prod")
                event("rollback", set=set_name)
        except EmbstoreError as exc:
            event("read_error", set=set_name, error=str(exc).splitlines()[0][:300])
        except Exception as exc:  # noqa: BLE001
            event("unexpected", set=set_name, error=f"read: {type(exc).__name__}: {exc}"[:300],
                  where=traceback.format_exc().splitlines()[-3][:200])
    event("stopped")
    store.close()


# -- driver ---------------------------------------------------------------------


class Worker:
    def __init__(self, args, home: Path, run_dir: Path, wid: int, stop: Path):
        self.wid = wid
        self.log = run_dir / f"worker{wid}.jsonl"
        cmd = [sys.executable, __file__, "--worker", str(home), "--wid", str(wid), "--log", str(self.log),
               "--stop", str(stop), "--rows", str(args.rows), "--dim", str(args.dim),
               "--seed", str(args.seed * 1000 + wid)]
        env = dict(os.environ)
        env.pop("EMBSTORE_FAULT_AFTER", None)
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(run_dir / f"worker{wid}.err", "w"))

    def events(self) -> list[dict]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut by SIGKILL
        return out

    def ready(self) -> bool:
        return any(e["event"] == "ready" for e in self.events())

    def in_publish(self) -> bool:
        last = [e["event"] for e in self.events() if e["event"] in ("begin", "published", "failed", "unexpected")]
        return bool(last) and last[-1] == "begin"


def _init_store(args, home: Path) -> None:
    """The home's settings; with --no-fresh also the registry, Feast repo and their schemas."""
    from embstore.settings import parse_settings, write_default_settings
    from embstore.store import EmbeddingStore

    settings = {}
    if args.backend == "team":
        tag = uuid.uuid4().hex[:8]
        settings = {"backend": "team", "postgres_url": args.postgres, "redis_url": args.redis,
                    "schema": f"soak_{tag}", "project": f"soak_{tag}"}
    if not args.fresh:
        EmbeddingStore.init(home, progress=False, **settings).close()
        return
    home.mkdir(parents=True, exist_ok=True)
    write_default_settings(home, parse_settings(settings))


def _drop_team(store, postgres_url: str) -> None:
    import sqlalchemy as sa

    try:
        store.feast.store.teardown()
    except Exception:  # noqa: BLE001 - best effort
        pass
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for schema in (store.settings.schema_name, store.backend.feast_schema):
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def drive(args) -> int:
    from embstore.ops.consistency import check_store
    from embstore.store import EmbeddingStore

    rng = random.Random(args.seed)
    run_dir = Path(args.home).resolve() if args.home else Path(tempfile.mkdtemp(prefix="embstore-soak-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    home = run_dir / "home"
    _init_store(args, home)
    stop = run_dir / "stop"
    print(f"soak: {args.backend} backend, {args.workers} workers, {args.minutes} min, kills every "
          f"{args.kill_min}-{args.kill_max} s, home {home}", flush=True)

    started = time.monotonic()
    deadline = started + args.minutes * 60
    wid = 0
    workers: list[Worker] = []
    retired: list[Worker] = []
    kills = kills_in_publish = 0
    for _ in range(args.workers):
        workers.append(Worker(args, home, run_dir, wid, stop))
        wid += 1
    next_kill = time.monotonic() + rng.uniform(args.kill_min, args.kill_max)
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        for i, w in enumerate(workers):  # a worker that died by itself is replaced too
            if w.proc.poll() is not None:
                retired.append(w)
                workers[i] = Worker(args, home, run_dir, wid, stop)
                wid += 1
        if time.monotonic() >= next_kill:
            candidates = [w for w in workers if w.ready()]
            if candidates:
                victim = rng.choice(candidates)
                in_publish = victim.in_publish()
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                kills += 1
                kills_in_publish += in_publish
                retired.append(victim)
                workers[workers.index(victim)] = Worker(args, home, run_dir, wid, stop)
                wid += 1
            next_kill = time.monotonic() + rng.uniform(args.kill_min, args.kill_max)
        if time.monotonic() - last_report > 30:
            done = sum(1 for w in workers + retired for e in w.events() if e["event"] == "published")
            print(f"  {time.monotonic() - started:5.0f} s: {done} publishes, {kills} kills", flush=True)
            last_report = time.monotonic()
    load_s = time.monotonic() - started
    stop.touch()
    for w in workers:
        try:
            w.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
    wind_down_s = time.monotonic() - started - load_s

    events = [e for w in workers + retired for e in w.events()]
    count = lambda kind: sum(1 for e in events if e["event"] == kind)  # noqa: E731
    unexpected = [e for e in events if e["event"] == "unexpected"]
    failures = [e["error"] for e in events if e["event"] == "failed"]

    store = EmbeddingStore(home, progress=False)  # reopening reaps the killed publishers' versions
    versions = {s: store.versions(s) for s in store.sets()}
    statuses = [v.status for vs in versions.values() for v in vs]
    t0 = time.monotonic()
    report = check_store(store, online_sample=args.online_sample)
    check_s = time.monotonic() - t0
    removed = store.gc()
    after = check_store(store, online_sample=args.online_sample)
    figures = {
        "backend": args.backend,
        "workers": args.workers,
        "minutes": round(load_s / 60, 2),
        "wind_down_seconds": round(wind_down_s, 1),
        "publishes_completed": statuses.count("published"),
        "publishes_reported_by_workers": count("published"),
        "publish_errors_clean": count("failed"),
        "read_errors_clean": count("read_error"),
        "start_errors_clean": count("start_error"),
        "unexpected_errors": len(unexpected),
        "kills": kills,
        "kills_during_publish": kills_in_publish,
        "workers_started": wid,
        "rollbacks": count("rollback"),
        "versions": len(statuses),
        "failed_versions": statuses.count("failed"),
        "building_left": statuses.count("building"),
        "inconsistencies": len(report.inconsistencies),
        "inconsistencies_after_gc": len(after.inconsistencies),
        "gc_removed": len(removed),
        "online_rows_compared": report.checked_online_rows,
        "check_seconds": round(check_s, 1),
        "aliases": {s: store.resolve(f"{s}@prod").number for s in versions if any(v.aliases for v in versions[s])},
        "home": str(home),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"publishes completed: {figures['publishes_completed']} in {figures['minutes']} min of load "
              f"+ {wind_down_s:.0f} s for the workers to finish ({figures['publishes_reported_by_workers']} "
              "confirmed to their workers; the rest were killed between publish and reply)")
        print(f"kills: {kills} ({kills_in_publish} during a publish); workers started: {wid}")
        print(f"versions: {figures['versions']} = {figures['publishes_completed']} published + "
              f"{figures['failed_versions']} failed + {figures['building_left']} building")
        print(f"clean publish errors (EmbstoreError): {figures['publish_errors_clean']}; clean read errors: "
              f"{figures['read_errors_clean']}; clean start errors: {figures['start_errors_clean']}; "
              f"unexpected errors: {len(unexpected)}")
        print(f"inconsistencies: {len(report.inconsistencies)} ({report.summary()}; {check_s:.1f} s)")
        print(f"after gc ({len(removed)} failed versions collected): {len(after.inconsistencies)} inconsistencies")
    for f in report.inconsistencies[:20] + after.inconsistencies[:20]:
        print("  INCONSISTENT " + f.line())
    for e in unexpected[:10]:
        print(f"  UNEXPECTED {e['error']} at {e.get('where')}")
    if failures:
        common: dict[str, int] = {}
        for f in failures:
            key = f.split(";")[0][:160]
            common[key] = common.get(key, 0) + 1
        print("clean publish errors seen (most common first):")
        for key, n in sorted(common.items(), key=lambda kv: -kv[1])[:5]:
            print(f"  {n:4d} x {key}")
    if args.backend == "team" and not args.keep:
        _drop_team(store, args.postgres)
    store.close()
    return 1 if report.inconsistencies or after.inconsistencies or unexpected else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="how long to publish under load (default 5)")
    p.add_argument("--workers", type=int, default=4, help="concurrent publisher processes (default 4)")
    p.add_argument("--backend", choices=["embedded", "team"], default="embedded")
    p.add_argument("--postgres", default=os.environ.get("EMBSTORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    p.add_argument("--redis", default=os.environ.get("EMBSTORE_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    p.add_argument("--home", help="run directory (default: a new temp dir); the store home is DIR/home")
    p.add_argument("--kill-min", type=float, default=3.0, help="seconds between kills, lower bound")
    p.add_argument("--kill-max", type=float, default=10.0, help="seconds between kills, upper bound")
    p.add_argument("--rows", type=int, default=300, help="vectors per version (half to all of it)")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--online-sample", type=int, default=20, help="online rows the checker compares per version")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", help="run one soak per seed (e.g. 1-8 or 3,5) and print a line each and the totals")
    p.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=True,
                   help="workers open a store nobody has opened yet (default); --no-fresh creates it first")
    p.add_argument("--keep", action="store_true", help="team: keep the soak's PostgreSQL schemas and Redis keys")
    p.add_argument("--json", action="store_true")
    # worker mode (internal)
    p.add_argument("--worker", metavar="HOME", help=argparse.SUPPRESS)
    p.add_argument("--wid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    p.add_argument("--stop", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.wid, Path(args.log), Path(args.stop), args.rows, args.dim, args.seed)
        return 0
    if args.seeds:
        return many(args)
    return drive(args)


def many(args) -> int:
    """One soak per seed, each in a child process (its own run directory and store)."""
    seeds: list[int] = []
    for part in args.seeds.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    common = ["--minutes", str(args.minutes), "--workers", str(args.workers), "--backend", args.backend,
              "--postgres", args.postgres, "--redis", args.redis, "--kill-min", str(args.kill_min),
              "--kill-max", str(args.kill_max), "--rows", str(args.rows), "--dim", str(args.dim),
              "--online-sample", str(args.online_sample), "--fresh" if args.fresh else "--no-fresh"]
    if args.keep:
        common.append("--keep")
    keys = ("publishes_completed", "kills", "kills_during_publish", "workers_started", "unexpected_errors",
            "publish_errors_clean", "read_errors_clean", "start_errors_clean", "inconsistencies",
            "inconsistencies_after_gc", "failed_versions")
    totals = dict.fromkeys(keys, 0)
    worst = 0
    for seed in seeds:
        home = ["--home", str(Path(args.home) / f"seed{seed}")] if args.home else []
        run = subprocess.run([sys.executable, __file__, *common, *home, "--seed", str(seed), "--json"],
                             capture_output=True, text=True)
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if not lines:
            print(f"seed {seed}: no figures (exit {run.returncode}): {run.stderr[-500:]}")
            worst = 1
            continue
        figures = json.loads(lines[-1])
        worst = max(worst, run.returncode)
        for key in keys:
            totals[key] += figures[key]
        print(f"seed {seed}: " + ", ".join(f"{key} {figures[key]}" for key in keys), flush=True)
        for line in run.stdout.splitlines():
            if line.startswith(("  UNEXPECTED", "  INCONSISTENT")):
                print("  " + line.strip())
    print(f"{len(seeds)} soaks ({args.backend}, {args.minutes} min each): " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    return worst


if __name__ == "__main__":
    sys.exit(main())
