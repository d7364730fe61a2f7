"""The same jobs on the local engine and on Spark local[1] and local[2]: stages, wall time, quality, memory.

    python bench/bench_spark.py movielens [--movielens ../shared/data/ml-latest-small]
    python bench/bench_spark.py generated [--interactions 20000000]
    python bench/bench_spark.py cora [--cora ../shared/data/cora]
    python bench/bench_spark.py index [--count 2000000 --dim 64 --shard-rows 500000]

Each (job, engine) runs in a fresh process on a fresh team-backend store (PostgreSQL +
Redis, as the spark engine needs), so its peak memory is its own: the Python process's and
the largest child's (Spark's JVM). Printed per run, one JSON line:

- ``read_s``: reading the inputs and building what the producer trains on (per-user
  sequences, or the item graph), with ``rows_per_s`` over the interactions;
- ``train_s``: training (gensim or Spark ML Word2Vec); ``publish_s``: everything after;
- quality: MovieLens HR@10 / NDCG@10 leave-last-out (ratings >= 3.5, the last rating of
  each user held out, seen items excluded); on the generated data the share of each item's
  10 nearest neighbours in its own planted cluster; on Cora the linear-probe accuracy of
  DeepWalk on the standard split.

``index`` publishes ``count`` synthetic vectors (``dim``, 1,000 planted clusters, cosine,
``index=auto``: an IVF) on Spark local[2] twice, each in a fresh process: the IVF built on the
driver from the collected vectors, and the IVF trained on the driver and filled shard by shard on
the executors, then merged on disk (``shard_index_rows`` rows a shard). Printed per run:
``publish_s`` (the whole publish), ``index_s`` (the index's build as its report says: for the
sharded build training, the executors' shards, the merge and the recall measurement; the
driver's build runs beside the offline and online writes), ``recall@10`` against exact search on
the recall sample, ``query_ms`` (1,000 held-out queries through ``recall``), the driver's and the
JVM's peak RSS.

On this 2-core machine local[2] is not a cluster: the figures say what Spark costs over
the local engine on one machine, and that the result is as good.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ENGINES = [("local", None), ("spark", "local[1]"), ("spark", "local[2]")]


def team_settings() -> dict:
    tag = uuid.uuid4().hex[:10]
    return {"backend": "team", "postgres_url": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
            "redis_url": "redis://127.0.0.1:6379/0", "schema": f"b_{tag}", "project": f"b_{tag}"}


def drop(store) -> None:
    import sqlalchemy as sa

    try:
        store.feast.store.teardown()
    except Exception:  # noqa: BLE001
        pass
    store.close()
    engine = sa.create_engine(store.settings.postgres_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for schema in (store.settings.schema_name, store.backend.feast_schema):
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


# -- one run, in its own process ---------------------------------------------------------


def one_run(job: str, engine: str, master: str | None, data: str, producer: str, config: dict) -> dict:
    from embstore import EmbeddingStore
    from embstore.inputs import InputSpec

    home = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    settings = team_settings()
    if engine == "spark":
        settings.update(engine="spark", engine_config={"master": master})
    store = EmbeddingStore.init(home / "home", progress=False, **settings)
    columns = {"user_id": "userId", "item_id": "movieId"} if job == "movielens" else {}
    kind = "edges" if job == "cora" else "interactions"
    spec = InputSpec(kind, Path(local_copy(data) if engine == "local" else data), columns)
    try:
        t0 = time.perf_counter()
        if engine == "spark":
            store.engines.get().session  # the session starts before the clock of the job's stages
        started = time.perf_counter()
        read_s = read_stage(store, engine, spec, config, producer)
        t1 = time.perf_counter()
        version = store.run(producer, "items", [spec], config, entity="node_id" if job == "cora" else None)
        wall = time.perf_counter() - t1
        train_s = float(version.metrics.get("train_seconds", 0.0))
        result = {"job": job, "engine": engine if engine == "local" else f"spark {master}", "producer": producer,
                  "session_s": round(started - t0, 2), "read_s": round(read_s, 2), "train_s": round(train_s, 2),
                  "run_s": round(wall, 2), "publish_s": round(max(wall - read_s - train_s, 0.0), 2),
                  "items": version.count}
        result.update(quality(store, job, version, data))
        result["driver_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if engine == "spark":
            result["jvm_peak_mib"] = jvm_peak_mib(store.engines.get().session)
        return result
    finally:
        drop(store)


def index_run(mode: str, count: int, dim: int, shard_rows: int) -> dict:
    """One publish of ``count`` planted vectors on Spark local[2], its index built on the driver
    (``mode`` driver) or shard by shard on the executors (sharded)."""
    from embstore import EmbeddingStore, Embeddings
    from embstore.versions.publishing import PublishRequest

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 1000, count)]
    vectors += 0.5 * rng.normal(size=(count, dim)).astype(np.float32)
    queries = centres[rng.integers(0, 1000, 1000)] + 0.5 * rng.normal(size=(1000, dim)).astype(np.float32)
    emb = Embeddings(np.arange(count, dtype=np.int64), vectors)
    home = Path(tempfile.mkdtemp(prefix="bench-spark-index-"))
    settings = team_settings()
    settings.update(engine="spark", engine_config={
        "master": "local[2]", "conf": {"spark.driver.memory": "6g"}, "shard_index_rows": shard_rows,
        "shard_index_min_rows": 1 if mode == "sharded" else count + 1})
    store = EmbeddingStore.init(home / "home", progress=False, **settings)
    try:
        engine = store.engines.get()
        engine.session  # started before the clock
        writers = engine.writers(store.feast.repo)
        writers.check(store.feast.online_store_type())
        t0 = time.perf_counter()
        version = store.publisher.publish(PublishRequest("vectors", emb, writers=writers))
        publish_s = time.perf_counter() - t0
        report = version.metrics["index"]
        store.recall(version, vectors=queries[:10], k=10)  # loads the index
        t1 = time.perf_counter()
        store.recall(version, vectors=queries, k=10)
        query_ms = (time.perf_counter() - t1) * 1000 / len(queries)
        index_bytes = sum(f.stat().st_size for f in (Path(version.storage_path) / "index").iterdir())
        return {"job": "index", "mode": mode, "count": count, "dim": dim, "publish_s": round(publish_s, 1),
                "index_s": report.get("build_seconds"), "kind": report["kind"], "build": report.get("build", "driver"),
                "shards": report.get("shards"), "nlist": report.get("nlist"), "nprobe": report.get("nprobe"),
                "recall@10": report.get("recall@10"), "sample": report.get("sample"),
                "query_ms": round(query_ms, 3), "index_mib": round(index_bytes / 2**20),
                "driver_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "jvm_peak_mib": jvm_peak_mib(engine.session)}
    finally:
        drop(store)


def jvm_peak_mib(session) -> int | None:
    """The peak RSS of the local JVM pyspark started (VmHWM), or None when it is not a child here."""
    proc = getattr(session.sparkContext._gateway, "proc", None)
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except (AttributeError, OSError):
        return None
    line = next((ln for ln in status.splitlines() if ln.startswith("VmHWM:")), None)
    return round(int(line.split()[1]) / 1024) if line else None


def read_stage(store, engine: str, spec, config: dict, producer: str) -> float:
    """Reading the inputs and building the producer's training data, timed on its own."""
    t0 = time.perf_counter()
    inputs = store.engines.get().inputs([spec])
    if spec.kind == "edges":
        inputs.edges().count() if engine == "spark" else inputs.edges()
    elif producer == "item2vec":
        seqs = inputs.sequences(min_rating=config.get("min_rating"))
        seqs.count() if engine == "spark" else len(seqs)
    else:
        if engine == "spark":
            inputs.moves(config.get("min_rating")).count()
        else:
            from embstore.graph import Graph

            Graph.from_sequences(inputs.sequences(min_rating=config.get("min_rating")))
    return time.perf_counter() - t0


def quality(store, job: str, version, data: str) -> dict:
    if job == "movielens":
        from embstore_plugins.evaluators import HitRate, HitRateConfig

        got = HitRate().evaluate(store, version, HitRateConfig(path=Path(data).with_name("full.csv"), k=10,
                                                              min_rating=3.5, history=5,
                                                              columns={"user_id": "userId", "item_id": "movieId"}))
        return {"hr@10": round(got["hr@10"], 4), "ndcg@10": round(got["ndcg@10"], 4), "recallable": round(got["hr_coverage"], 4)}
    if job == "generated":
        loaded = store.load(version)
        sample = loaded.ids[:: max(1, len(loaded.ids) // 500)].tolist()
        found = store.recall(version, ids=sample, k=10)
        same = [np.mean([str(n).split("_")[0] == str(q).split("_")[0] for n in r.ids]) for q, r in zip(sample, found)]
        return {"cluster_share@10": round(float(np.mean(same)), 4)}
    nodes = pd.read_csv(Path(data).with_name("nodes.csv"))
    from sklearn.linear_model import LogisticRegression

    train, test = nodes[nodes["split"] == "train"], nodes[nodes["split"] == "test"]
    x = {i: v for i, v in zip(store.load(version).ids.tolist(), np.asarray(store.load(version).vectors))}
    zero = np.zeros(version.dim, dtype=np.float32)
    fit = LogisticRegression(max_iter=2000).fit(np.stack([x.get(i, zero) for i in train["node_id"]]), train["label"])
    return {"probe": round(float(fit.score(np.stack([x.get(i, zero) for i in test["node_id"]]), test["label"])), 4)}


# -- the jobs ------------------------------------------------------------------------------


def movielens_data(path: Path, tmp: Path) -> str:
    """Leave-last-out: a parquet dataset of the training ratings (several files, hive-partitioned), and
    the full file the evaluator holds the last ratings out of."""
    from embstore_plugins.evaluators import leave_last_out

    ratings = pd.read_csv(path / "ratings.csv")
    train, full = leave_last_out(ratings, min_rating=3.5)
    full.to_csv(tmp / "full.csv", index=False)
    root = tmp / "train"
    for part, group in train.groupby(train["userId"] % 4):
        (root / f"shard={part}").mkdir(parents=True)
        group.to_parquet(root / f"shard={part}" / "part.parquet", index=False)
    return str(root)


def generated_data(n: int, tmp: Path) -> str:
    """``n`` interactions of users who mostly stay inside one of 200 planted clusters of 500 items."""
    rng = np.random.default_rng(0)
    root = tmp / "events"
    root.mkdir()
    per_file = 2_000_000
    users = max(1, n // 100)
    for f, start in enumerate(range(0, n, per_file)):
        m = min(per_file, n - start)
        user = rng.integers(0, users, m)
        cluster = np.where(rng.random(m) < 0.9, user % 200, rng.integers(0, 200, m))
        item = np.char.add(np.char.add(cluster.astype(str), "_"), rng.integers(0, 500, m).astype(str))
        pd.DataFrame({"user_id": user, "item_id": item, "timestamp": 1_700_000_000 + start + np.arange(m)}).to_parquet(
            root / f"part-{f:03d}.parquet", index=False)
    return str(root)


def local_copy(data: str) -> str:
    """The local engine reads files: a dataset directory's rows as one parquet file, in the dataset's
    order (file path, then row), which is the order Spark's ties follow."""
    path = Path(data)
    if not path.is_dir():
        return data
    target = path.with_name(path.name + ".parquet")
    if not target.exists():
        parts = [pd.read_parquet(f) for f in sorted(path.rglob("*.parquet"))]
        pd.concat(parts, ignore_index=True).to_parquet(target, index=False)
    return str(target)


def child(args: list[str]) -> None:
    if args[0] == "index":
        mode, count, dim, shard_rows = args[1], *map(int, args[2:5])
        print(json.dumps(index_run(mode, count, dim, shard_rows)))
        return
    job, engine, master, data, producer, config = args
    print(json.dumps(one_run(job, engine, None if master == "-" else master, data, producer, json.loads(config))))


def run_child(job: str, engine: str, master: str | None, data: str, producer: str, config: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", job, engine, master or "-", data, producer,
                           json.dumps(config)], capture_output=True, text=True, timeout=7200)
    if done.returncode:
        return {"job": job, "engine": engine, "master": master, "error": done.stderr.strip().splitlines()[-1:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", choices=["movielens", "generated", "cora", "index"])
    p.add_argument("--movielens", type=Path, default=HERE.parents[1] / "shared" / "data" / "ml-latest-small")
    p.add_argument("--cora", type=Path, default=HERE.parents[1] / "shared" / "data" / "cora")
    p.add_argument("--interactions", type=int, default=20_000_000)
    p.add_argument("--producers", default="item2vec,deepwalk")
    p.add_argument("--engines", default="local,local[1],local[2]",
                   help="which runs: local, and Spark masters (local[1], local[2]), comma-separated")
    p.add_argument("--count", type=int, default=2_000_000, help="index: vectors published")
    p.add_argument("--dim", type=int, default=64, help="index: their dimension")
    p.add_argument("--shard-rows", type=int, default=500_000, help="index: the spark engine's shard_index_rows")
    args = p.parse_args(argv)
    if args.job == "index":
        for mode in ("driver", "sharded"):
            done = subprocess.run([sys.executable, __file__, "--child", "index", mode, str(args.count), str(args.dim),
                                   str(args.shard_rows)], capture_output=True, text=True, timeout=7200)
            result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else \
                {"job": "index", "mode": mode, "error": done.stderr.strip().splitlines()[-3:]}
            print(json.dumps(result), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-spark-data-") as tmp:
        tmp = Path(tmp)
        if args.job == "movielens":
            data, config = movielens_data(args.movielens, tmp), {"min_rating": 3.5}
        elif args.job == "generated":
            t0 = time.perf_counter()
            data, config = generated_data(args.interactions, tmp), {"min_count": 5, "epochs": 1, "window": 5}
            print(json.dumps({"generated": args.interactions, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        else:
            data, config = str(args.cora / "edges.csv"), {}
        producers = ["deepwalk"] if args.job == "cora" else args.producers.split(",")
        for producer in producers:
            wanted = args.engines.split(",")
            for engine, master in [(e, m) for e, m in ENGINES if (m or e) in wanted]:
                result = run_child(args.job, engine, master, data, producer, config)
                if "run_s" in result and args.job != "cora":
                    rows = args.interactions if args.job == "generated" else None
                    result["rows_per_s_read"] = round(rows / result["read_s"]) if rows and result["read_s"] else None
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
