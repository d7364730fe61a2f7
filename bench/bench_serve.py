"""Load benchmark of `embstore serve`: the similar-items endpoint over N x 64-d vectors.

    python bench/bench_serve.py                       # 1M rows, IVF index, 1/8/32 clients
    python bench/bench_serve.py --rows 200000 --index flat
    python bench/bench_serve.py --home /tmp/bench-serve --keep   # reuse the published store next time

Publishes ``--rows`` clustered random vectors as ``bench_items@prod`` (through Feast's online
store, as every version is: about a minute per million rows here), then measures top-k
similar-item queries at each concurrency level, bounded by ``--requests`` and ``--seconds``:

1. through the Python API (``store.recall``) in this process, one thread per client;
2. over HTTP against ``embstore serve`` in a child process on a free loopback port, from this
   process (a second process from the server's point of view), one keep-alive connection per
   client thread.

Prints throughput and p50/p99 latency per level and writes them as JSON (``--out``).
Both sides run faiss with one OpenMP thread per search, as ``embstore serve`` does by default.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `embstore serve` does; before faiss loads OpenMP

import argparse
import http.client
import json
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

SET = "bench_items"
REF = f"{SET}@prod"


def clustered(rows: int, dim: int, seed: int = 0, clusters: int = 1000) -> np.ndarray:
    """Vectors around ``clusters`` random centres, built in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 100_000):
        stop = min(start + 100_000, rows)
        which = rng.integers(0, clusters, size=stop - start)
        out[start:stop] = centres[which] + 0.35 * rng.normal(size=(stop - start, dim)).astype(np.float32)
    return out


def build(home: Path, rows: int, dim: int, index: str) -> dict:
    from embstore.embeddings import Embeddings
    from embstore.store import EmbeddingStore

    store = EmbeddingStore.init(home, progress=sys.stderr.isatty())
    try:
        v = store.resolve(REF)
        if v.count == rows and v.dim == dim and v.retriever_config.get("index") == index:
            print(f"reusing {v.ref} in {home} ({rows:,} x {dim}, {index})", flush=True)
            return {"reused": True, "ref": v.ref}
    except Exception:
        pass
    started = time.perf_counter()
    vectors = clustered(rows, dim)
    emb = Embeddings(ids=np.arange(rows, dtype=np.int64), vectors=vectors)
    v = store.publish(SET, emb, promote="prod", retriever_config={"index": index})
    took = time.perf_counter() - started
    print(f"published {v.ref}: {rows:,} x {dim}, index {index}, {took:.0f}s", flush=True)
    store.close()
    return {"reused": False, "ref": v.ref, "publish_seconds": round(took, 1)}


def summarise(latencies: list[float], elapsed: float, errors: int) -> dict:
    lat = np.asarray(latencies) * 1000
    return {
        "requests": int(lat.size),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(lat.size / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "mean_ms": round(float(lat.mean()), 2) if lat.size else None,
    }


def run_level(clients: int, requests: int, seconds: float, make_worker) -> dict:
    """``clients`` threads share a budget of ``requests`` and a deadline of ``seconds``."""
    lock = threading.Lock()
    state = {"left": requests, "errors": 0}
    latencies: list[list[float]] = [[] for _ in range(clients)]
    deadline = time.perf_counter() + seconds
    barrier = threading.Barrier(clients + 1)

    def take() -> bool:
        with lock:
            if state["left"] <= 0 or time.perf_counter() > deadline:
                return False
            state["left"] -= 1
            return True

    def loop(slot: int) -> None:
        call = make_worker(slot)
        barrier.wait()
        mine = latencies[slot]
        while take():
            t0 = time.perf_counter()
            try:
                call()
            except Exception:
                with lock:
                    state["errors"] += 1
                continue
            mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - started
    return summarise([x for xs in latencies for x in xs], elapsed, state["errors"])


def python_api(home: Path, levels: list[int], requests: int, seconds: float, k: int, rows: int) -> dict:
    from embstore.store import EmbeddingStore

    store = EmbeddingStore(home, progress=False)
    ids = np.random.default_rng(1).integers(0, rows, size=100_000).tolist()
    store.recall(REF, ids=[0], k=k)  # load vectors and index once, outside the timing
    out = {}
    for clients in levels:
        def make_worker(slot: int):
            cursor = [slot * 3001]

            def call():
                cursor[0] += 1
                store.recall(REF, ids=[ids[cursor[0] % len(ids)]], k=k)

            return call

        out[clients] = run_level(clients, requests, seconds, make_worker)
        print(f"python api  clients={clients:>2}  {fmt(out[clients])}", flush=True)
    store.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "embstore.cli", "--home", str(home), "serve", "--host", "127.0.0.1",
           "--port", str(port), "--max-k", "1000", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600  # preloading 1M vectors and their index checks checksums first
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"embstore serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"embstore serve did not come up in 600s:\n{log.read_text()}")


def http_api(port: int, levels: list[int], requests: int, seconds: float, k: int, rows: int,
             expected: dict) -> dict:
    ids = np.random.default_rng(1).integers(0, rows, size=100_000).tolist()
    # the answers must be the Python API's, not just fast
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for qid, want in expected.items():
        conn.request("GET", f"/api/sets/{REF}/similar?id={qid}&k={k}")
        body = json.loads(conn.getresponse().read())
        if body["ids"] != want:
            raise SystemExit(f"HTTP answer for id {qid} differs from the Python API: {body['ids']} vs {want}")
    conn.close()
    out = {}
    for clients in levels:
        def make_worker(slot: int):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            cursor = [slot * 3001]

            def call():
                cursor[0] += 1
                conn.request("GET", f"/api/sets/{REF}/similar?id={ids[cursor[0] % len(ids)]}&k={k}")
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    raise RuntimeError(f"{response.status}: {payload[:200]!r}")

            return call

        out[clients] = run_level(clients, requests, seconds, make_worker)
        print(f"http        clients={clients:>2}  {fmt(out[clients])}", flush=True)
    return out


def fmt(r: dict) -> str:
    return (f"{r['throughput_rps']:>8} req/s  p50 {r['p50_ms']:>7} ms  p99 {r['p99_ms']:>7} ms  "
            f"({r['requests']} requests in {r['seconds']}s, {r['errors']} errors)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--index", choices=["flat", "ivf", "hnsw"], default="ivf",
                    help="faiss index of the published version (flat: exact, scans every vector per query)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clients", default="1,8,32", help="concurrency levels, comma-separated")
    ap.add_argument("--requests", type=int, default=3000, help="request budget per level")
    ap.add_argument("--seconds", type=float, default=30.0, help="time budget per level")
    ap.add_argument("--home", type=Path, help="store home to build or reuse (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep a temporary home")
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench_serve.json"))
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    home = args.home or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    result: dict = {
        "rows": args.rows, "dim": args.dim, "index": args.index, "k": args.k, "levels": levels,
        "requests_per_level": args.requests, "seconds_per_level": args.seconds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
    }
    proc = None
    try:
        result["build"] = build(home, args.rows, args.dim, args.index)
        result["python_api"] = python_api(home, levels, args.requests, args.seconds, args.k, args.rows)
        from embstore.store import EmbeddingStore

        store = EmbeddingStore(home, progress=False)
        expected = {q: store.recall(REF, ids=[q], k=args.k)[0].ids for q in (0, 1, args.rows - 1)}
        store.close()
        port = free_port()
        started = time.perf_counter()
        proc = start_server(home, port, home / "serve.log")
        result["server_start_seconds"] = round(time.perf_counter() - started, 1)
        print(f"embstore serve up on 127.0.0.1:{port} in {result['server_start_seconds']}s (preloaded)", flush=True)
        result["http"] = http_api(port, levels, args.requests, args.seconds, args.k, args.rows, expected)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.home is None and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
