"""Publishing at catalogue scale: every publish step's rows/s beside its floor, Feast's own online
write path as the peer, and the peak memory of the publish.

    python bench/bench_publish.py                                    # 1M x 64, embedded and team
    python bench/bench_publish.py --sizes 1000000,10000000 --backends embedded,team
    python bench/bench_publish.py --sizes 100000 --backends embedded --peer-rows 20000

Each (backend, size) runs in its own child process, so its peak RSS is its own: the child makes
``size`` clustered float32 vectors of ``--dim`` (int64 ids), opens a fresh store (embedded: a
temporary HOME; team: PostgreSQL + Redis as in tests/conftest.py, in schemas and a Feast project
of its own, dropped after), publishes a 10-vector warm-up version (Feast's import and registry
set-up, paid once per process), then the big version with the store's defaults (``index=auto``)
and times each step of embstore.versions.publishing: validate (the checks before a version
number exists, and the step), files, offline, feast_apply, online, index, publish. A sampler
thread reads the RSS every 20 ms, so each step's peak is printed too.

Floors, measured in the same child on the same vectors after the publish (``os.sync()`` before
the publish and before each floor, so no earlier file's writeback competes with it):

- validate: ``np.isfinite`` of every value (in blocks) and ``np.unique(ids)``;
- files: ``np.save`` of the vectors on the same disk;
- offline: ``pyarrow.parquet.write_table`` of the same Arrow table (built zero-copy);
- online: embedded, ``executemany`` of Feast's upsert with the stored bytes precomputed, in key
  order, into a fresh table of Feast's schema in a scratch SQLite file; team, the same HSET
  commands precomputed as one byte string per chunk, pipelined on one connection into a scratch
  Redis database (``--redis-scratch-db``), replies read (the version's own rows are dropped
  from Redis first: 10M rows hold about 6 GB of its memory);
- index: the FAISS index ``index=auto`` chose, built bare (same lists, k-means sample and
  iterations for ivf; no recall measurement);
- feast_apply, publish: none (registry writes whose cost does not grow with the rows).

Peer: a separate version of ``--peer-rows`` of the same vectors; its online rows are cleared
and written by Feast's own path (``FeatureStore.write_to_online_store`` in chunks of 10,000, as
embstore wrote them before the bulk writer), cleared and written again by embstore's writer:
both rows/s, their ratio, and the stored bytes compared (they must be equal).

Targets (issue 15): end-to-end >= 100k rows/s at 1M on the embedded default, >= 10x Feast's own
write path on the same rows, and a 10M publish that completes. The machine may be shared: each
child prints the load average before it starts; ratios to floors measured in the same run carry
the noise, absolute rows/s do not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

STEPS = ("validate", "files", "offline", "feast_apply", "online", "index", "publish")


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Sampler(threading.Thread):
    """RSS every ``period`` seconds; ``peak(since, until)`` the largest sample in a time window."""

    def __init__(self, period: float = 0.02):
        super().__init__(daemon=True)
        self.period, self.samples, self.stopped = period, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.perf_counter(), rss_mib()))
            time.sleep(self.period)

    def peak(self, since: float, until: float) -> float:
        inside = [m for t, m in self.samples if since <= t <= until]
        return max(inside) if inside else rss_mib()


def timed_steps(publishing, sampler: Sampler) -> dict:
    """Wrap Publication.prepare and its step methods: seconds and peak RSS of each."""
    spans: dict = {}

    def wrap(name: str, method):
        def timed(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                spans[name] = (started, time.perf_counter())
        return timed

    publishing.Publication.prepare = wrap("prepare", publishing.Publication.prepare)
    for step in STEPS:
        setattr(publishing.Publication, f"step_{step}", wrap(step, getattr(publishing.Publication, f"step_{step}")))
    return spans


# -- floors -----------------------------------------------------------------------------------


def floor_validate(ids: np.ndarray, vectors: np.ndarray) -> float:
    """Every value finite (a block at a time: no (n, d) temporary to allocate) and the ids unique."""
    started = time.perf_counter()
    assert all(np.isfinite(vectors[s:s + 65536]).all() for s in range(0, len(vectors), 65536))
    assert len(np.unique(ids)) == len(ids)
    return time.perf_counter() - started


def floor_files(directory: Path, vectors: np.ndarray) -> float:
    started = time.perf_counter()
    np.save(directory / "floor.npy", vectors)
    took = time.perf_counter() - started
    (directory / "floor.npy").unlink()
    return took


def floor_offline(directory: Path, frame) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embstore.backends import files

    schema = files._offline_schema(frame)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False).replace_schema_metadata(schema.metadata)
    started = time.perf_counter()
    pq.write_table(table, directory / "floor.parquet")
    took = time.perf_counter() - started
    (directory / "floor.parquet").unlink()
    return took


def encoded(store, view: str, frame, key_order: bool):
    """The bytes embstore's writer stores for ``frame``, precomputed chunk by chunk."""
    from embstore.backends import online_rows

    fv = store.feast.store.registry.get_feature_view(view, store.feast.store.project, allow_cache=False)
    return online_rows.FrameRows(fv, frame, online_rows.ENTITY_KEY_VERSION, key_order=key_order)


def floor_online_sqlite(directory: Path, store, view: str, frame) -> float:
    """executemany of Feast's upsert, bytes precomputed, into a fresh table of Feast's schema."""
    from embstore.backends import online_rows

    rows = encoded(store, view, frame, key_order=True)
    writer = online_rows.SqliteRows(store.feast.store)
    precomputed = [[tuple(t) for _, it in writer._rows(rows, chunk) for t in it] for chunk in rows.chunks()]
    path = directory / "floor-online.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT, vector_value BLOB, "
                 "event_ts timestamp, created_ts timestamp, PRIMARY KEY(entity_key, feature_name))")
    conn.execute("CREATE INDEX t_ek ON t (entity_key)")
    conn.commit()
    upsert = ("INSERT INTO t (entity_key, feature_name, value, value_text, event_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?) "
              "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, value_text = "
              "excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts;")
    started = time.perf_counter()
    with conn:
        for chunk in precomputed:
            conn.executemany(upsert, chunk)
    took = time.perf_counter() - started
    conn.close()
    del precomputed
    path.unlink()
    return took


def floor_online_redis(store, view: str, frame, scratch_db: int) -> float:
    """The same HSET commands, precomputed, pipelined into a scratch Redis database."""
    import redis

    from embstore.backends import online_rows
    from embstore.backends.team import redis_address

    rows = encoded(store, view, frame, key_order=False)
    writer = online_rows.RedisRows(store.feast.store)
    precomputed = [writer.commands(rows, chunk) for chunk in rows.chunks()]
    host, port = redis_address(store.settings.redis_url)
    client = redis.Redis(host=host, port=port, db=scratch_db)
    if client.dbsize():
        raise SystemExit(f"redis db {scratch_db} is not empty; pick another with --redis-scratch-db")
    conn = client.connection_pool.get_connection()
    started = time.perf_counter()
    pending = None
    for packed, replies in precomputed:
        conn.send_packed_command([packed])
        if pending:
            for _ in range(pending):
                conn.read_response()
        pending = replies
    for _ in range(pending or 0):
        conn.read_response()
    took = time.perf_counter() - started
    client.connection_pool.release(conn)
    client.flushdb()
    return took


def floor_index(vectors: np.ndarray, report: dict, metric: str) -> float:
    """The chosen FAISS index, built bare: no recall measurement, no tuning."""
    import faiss

    from embstore.linalg import unit_rows

    x = unit_rows(vectors) if metric == "cosine" else np.ascontiguousarray(vectors)
    started = time.perf_counter()
    kind, d = report["kind"], x.shape[1]
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexFlat(d, faiss_metric)
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlat(d, faiss_metric), d, report["nlist"], faiss_metric)
        index.cp.niter = report.get("kmeans_iterations", 25)
        points = report.get("train_points", len(x))
        index.cp.max_points_per_centroid = max(1, points // report["nlist"])
        sample = np.random.default_rng(0).choice(len(x), size=min(points, len(x)), replace=False)
        index.train(x[np.sort(sample)])
    else:
        index = faiss.IndexHNSWFlat(d, report["hnsw_m"], faiss_metric)
        index.hnsw.efConstruction = report["ef_construction"]
    index.add(x)
    return time.perf_counter() - started


# -- the peer: Feast's own online write path ----------------------------------------------------


def peer(store, vectors: np.ndarray, ids: np.ndarray, rows: int) -> dict:
    from embstore import Embeddings
    from embstore.backends import files
    from test_online_rows import clear, stored

    emb = Embeddings(ids=ids[:rows], vectors=vectors[:rows]).validated()
    v = store.publish("peer", emb, retriever_config={"index": "flat"})
    frame = files.offline_frame(emb, "item_id", v.valid_from)
    clear(store, v.feature_view)
    started = time.perf_counter()
    store.feast._write_online_through_feast(v.feature_view, frame)
    feast_s = time.perf_counter() - started
    theirs = stored(store, v.feature_view)
    clear(store, v.feature_view)
    started = time.perf_counter()
    store.feast.write_online(v.feature_view, frame)
    ours_s = time.perf_counter() - started
    same = stored(store, v.feature_view) == theirs
    return {"rows": rows, "feast_s": feast_s, "ours_s": ours_s, "same_bytes": same}


# -- one (backend, size) ------------------------------------------------------------------------


def drop_redis_rows(store) -> None:
    """UNLINK every Redis hash of the store's Feast project (10,000 keys per call)."""
    import redis

    from embstore.backends.team import redis_address

    host, port = redis_address(store.settings.redis_url)
    client = redis.Redis(host=host, port=port)
    pattern = b"*" + store.feast.store.project.encode()
    batch = []
    for key in client.scan_iter(match=pattern, count=10_000):
        batch.append(key)
        if len(batch) == 10_000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


def team_cleanup(store) -> None:
    """Drop the store's Redis rows and its PostgreSQL schemas."""
    import sqlalchemy as sa

    from conftest import POSTGRES_URL

    drop_redis_rows(store)
    store.close()
    engine = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for schema in (store.settings.schema_name, store.backend.feast_schema):
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def child(backend: str, n: int, dim: int, peer_rows: int, scratch_db: int, workdir: Path) -> dict:
    from bench_recall import clustered

    from embstore import Embeddings, EmbeddingStore
    from embstore.backends import files
    from embstore.versions import publishing

    load = os.getloadavg()
    ids = np.arange(n, dtype=np.int64)
    vectors = clustered(n, dim, clusters=1000, noise=0.35, seed=0)
    data_mib = rss_mib()
    sampler = Sampler()
    sampler.start()
    home = Path(tempfile.mkdtemp(prefix=f"bench-publish-{backend}-", dir=workdir)) / "home"
    settings = {}
    if backend == "team":
        from conftest import POSTGRES_URL, REDIS_URL

        tag = uuid.uuid4().hex[:10]
        settings = {"backend": "team", "postgres_url": POSTGRES_URL, "redis_url": REDIS_URL,
                    "schema": f"bench_{tag}", "project": f"bench_{tag}"}
    started = time.perf_counter()
    store = EmbeddingStore.init(home, progress=False, **settings)
    store.publish("warmup", Embeddings(ids=np.arange(10), vectors=np.ones((10, dim), dtype=np.float32)),
                  retriever_config={"index": "flat"})
    warmup_s = time.perf_counter() - started
    spans = timed_steps(publishing, sampler)
    try:
        os.sync()  # no writeback of earlier files competes with the publish (nor, below, with a floor)
        before_mib = rss_mib()
        started = time.perf_counter()
        version = store.publish("items", Embeddings(ids=ids, vectors=vectors))
        total_s = time.perf_counter() - started
        ended = time.perf_counter()
        time.sleep(0.05)
        peak_publish = sampler.peak(started, ended)
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        steps = {}
        for name in ("prepare", *STEPS):
            since, until = spans[name]
            steps[name] = {"s": until - since, "peak_mib": sampler.peak(since, until)}
        report = version.metrics["index"]
        directory = Path(version.storage_path)
        disk = {p.name: p.stat().st_size for p in directory.rglob("*") if p.is_file()}
        # floors, on the same vectors and disk
        emb = Embeddings(ids=ids, vectors=vectors).validated()
        frame = files.offline_frame(emb, "item_id", version.valid_from)
        floors = {}
        for name, measure in (("validate", lambda: floor_validate(ids, vectors)),
                              ("files", lambda: floor_files(directory, vectors)),
                              ("offline", lambda: floor_offline(directory, frame))):
            os.sync()
            floors[name] = measure()
        os.sync()
        if backend == "embedded":
            floors["online"] = floor_online_sqlite(directory, store, version.feature_view, frame)
        else:  # Redis holds the version's rows in memory: drop them before writing as many again
            drop_redis_rows(store)
            floors["online"] = floor_online_redis(store, version.feature_view, frame, scratch_db)
        del frame, emb
        gc.collect()
        os.sync()
        floors["index"] = floor_index(vectors, report, "cosine")
        peer_result = peer(store, vectors, ids, min(peer_rows, n)) if peer_rows else None
        online_db = home / "feature_repo" / "data" / "online.db"
        return {"backend": backend, "n": n, "dim": dim, "load": load, "data_mib": data_mib, "before_mib": before_mib,
                "peak_publish_mib": peak_publish, "maxrss_mib": maxrss, "warmup_s": warmup_s, "total_s": total_s,
                "steps": steps, "floors": floors, "index": report, "peer": peer_result, "disk": disk,
                "online_db_bytes": online_db.stat().st_size if online_db.exists() else None}
    finally:
        sampler.stopped.set()
        if backend == "team":
            team_cleanup(store)
        else:
            store.close()
        shutil.rmtree(home.parent, ignore_errors=True)


# -- the parent: run the children, print the table -----------------------------------------------


def fmt_rate(n: int, seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{n / seconds / 1e3:,.0f}k/s" if seconds > 0 else "∞"


def show(result: dict) -> None:
    n, steps, floors = result["n"], result["steps"], result["floors"]
    print(f"\n{result['backend']}, {n:,} x {result['dim']}  (load average before: "
          f"{', '.join(f'{x:.2f}' for x in result['load'])}; warm-up publish {result['warmup_s']:.1f}s)")
    print(f"  {'step':12} {'seconds':>8} {'rows/s':>10} {'floor s':>8} {'floor rows/s':>13} {'x floor':>8} {'peak RSS':>9}")
    rows = [("validate", steps["prepare"]["s"] + steps["validate"]["s"],
             max(steps["prepare"]["peak_mib"], steps["validate"]["peak_mib"]), floors["validate"])]
    rows += [(name, steps[name]["s"], steps[name]["peak_mib"], floors.get(name)) for name in STEPS[1:]]
    for name, seconds, peak, floor in rows:
        floor_s = f"{floor:8.2f}" if floor else f"{'—':>8}"
        ratio = f"{seconds / floor:7.1f}x" if floor else f"{'—':>8}"
        print(f"  {name:12} {seconds:8.2f} {fmt_rate(n, seconds):>10} {floor_s} {fmt_rate(n, floor):>13} {ratio} "
              f"{peak:6.0f} MB")
    floor_sum = sum(floors.values())
    print(f"  {'end to end':12} {result['total_s']:8.2f} {fmt_rate(n, result['total_s']):>10} {floor_sum:8.2f} "
          f"{fmt_rate(n, floor_sum):>13} {result['total_s'] / floor_sum:7.1f}x   (floor: the floors' sum)")
    index = result["index"]
    print(f"  index: {index['kind']} ({index['chosen']})"
          + "".join(f", {k} {index[k]}" for k in ("nlist", "nprobe", "ef_search", "recall@10", "sample",
                                                  "recall_seconds", "build_seconds") if k in index))
    print(f"  memory: vectors {result['data_mib']:.0f} MB in RSS before the store opened "
          f"({n * result['dim'] * 4 / 2**20:.0f} MB of float32), {result['before_mib']:.0f} MB before the publish, "
          f"peak during it {result['peak_publish_mib']:.0f} MB (process maxrss {result['maxrss_mib']:.0f} MB)")
    sizes = ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in sorted(result["disk"].items()) if v > 2**20)
    online = f"; online.db {result['online_db_bytes'] / 2**20:.0f} MB" if result["online_db_bytes"] else ""
    print(f"  files: {sizes}{online}")
    p = result["peer"]
    if p:
        feast_rate, ours_rate = p["rows"] / p["feast_s"], p["rows"] / p["ours_s"]
        print(f"  peer on {p['rows']:,} rows: Feast's write_to_online_store {p['feast_s']:.2f}s "
              f"({feast_rate / 1e3:,.1f}k rows/s), embstore's writer {p['ours_s']:.2f}s "
              f"({ours_rate / 1e3:,.0f}k rows/s): {ours_rate / feast_rate:.1f}x; the whole publish "
              f"{n / result['total_s'] / feast_rate:.1f}x Feast's online write alone; stored bytes equal: {p['same_bytes']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000", help="comma-separated vector counts")
    parser.add_argument("--backends", default="embedded,team")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--peer-rows", type=int, default=100_000, help="rows of the Feast peer (0: none)")
    parser.add_argument("--redis-scratch-db", type=int, default=13, help="an empty Redis database for the floor")
    parser.add_argument("--workdir", default=None, help="where the temporary homes go (default: the system temp)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.gettempdir())
    if args.child:
        backend, n = args.child.split(":")
        print(json.dumps(child(backend, int(n), args.dim, args.peer_rows, args.redis_scratch_db, workdir)))
        return
    import feast
    import faiss

    print(f"feast {feast.__version__}, faiss {faiss.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs; "
          f"free disk in {workdir}: {shutil.disk_usage(workdir).free / 2**30:.0f} GB")
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for backend in args.backends.split(","):
            command = [sys.executable, __file__, "--child", f"{backend}:{n}", "--dim", str(args.dim),
                       "--peer-rows", str(args.peer_rows), "--redis-scratch-db", str(args.redis_scratch_db),
                       "--workdir", str(workdir)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"\n{backend}, {n:,}: failed\n{done.stderr[-3000:]}")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            show(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
