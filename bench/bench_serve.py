"""Load benchmark of `embstore serve`: the similar-items endpoint over N x 64-d vectors.

    python bench/bench_serve.py                       # 1M rows, HNSW index, 1/8/32 clients
    python bench/bench_serve.py --rows 200000 --index flat
    python bench/bench_serve.py --home /tmp/bench-serve --keep   # reuse the published store next time
    python bench/bench_serve.py --home /tmp/bench-serve --clients 8 --serve "" --serve "--workers 2"

Publishes ``--rows`` clustered random vectors as ``bench_items@prod`` (or reuses the home's; the
store bench/bench_read.py builds is the same), then measures top-k similar-item queries at each
concurrency level, bounded by ``--requests`` and ``--seconds``:

1. through the Python API (``store.recall``) in this process, one thread per client;
2. over HTTP against ``embstore serve`` in a child process on a free loopback port, once per
   ``--serve`` setting (extra arguments of ``embstore serve``; default: none, its defaults): one
   keep-alive connection per client, each sending its next request when the last answer is read,
   driven by wrk when it is installed (``--client``: a load generator in C, so little of the CPU
   the server shares with it goes to the client), else by this process in one event loop.

Prints throughput and p50/p99 latency per level, and for ``--target-clients`` (8) the HTTP p99
against the 5 ms target and the Python API at the same concurrency; writes all as JSON (``--out``).
Both sides run faiss with one OpenMP thread per search, as ``embstore serve`` does by default.
``--token`` runs the server with a token and the clients send it (the gate's cost included).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `embstore serve` does; before faiss loads OpenMP

import argparse
import http.client
import json
import platform
import secrets
import shlex
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
        built = v.metrics.get("index", {})
        wanted = built.get("chosen") == "auto" if index == "auto" else built.get("kind") == index
        if v.count == rows and v.dim == dim and wanted:
            print(f"reusing {v.ref} in {home} ({rows:,} x {dim}, {built.get('kind')} index)", flush=True)
            return {"reused": True, "ref": v.ref, "index": built}
    except Exception:
        pass
    started = time.perf_counter()
    vectors = clustered(rows, dim)
    emb = Embeddings(ids=np.arange(rows, dtype=np.int64), vectors=vectors)
    v = store.publish(SET, emb, promote="prod", retriever_config={"index": index})
    took = time.perf_counter() - started
    built = v.metrics.get("index", {})
    print(f"published {v.ref}: {rows:,} x {dim}, {built.get('kind')} index ({index}), {took:.0f}s", flush=True)
    store.close()
    return {"reused": False, "ref": v.ref, "publish_seconds": round(took, 1), "index": built}


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


def start_server(home: Path, port: int, log: Path, extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "embstore.cli", "--home", str(home), "serve", "--host", "127.0.0.1",
           "--port", str(port), "--max-k", "1000", "--log-level", "warning", *(extra or [])]
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


async def _http_level(port: int, clients: int, requests: int, seconds: float, paths: list[str],
                      headers: str) -> dict:
    """``clients`` keep-alive connections in one event loop, each sending its next request as soon as
    the last answer is read (closed loop); latency is from the first byte written to the last read."""
    import asyncio
    import re

    length_of = re.compile(rb"content-length: *(\d+)", re.I)
    state = {"left": requests, "errors": 0}
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]

    async def loop(slot: int, reader, writer) -> None:
        cursor = slot * 3001
        while state["left"] > 0 and time.perf_counter() < deadline:
            state["left"] -= 1
            cursor += 1
            request = f"GET {paths[cursor % len(paths)]} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(length_of.search(head).group(1)))
            took = time.perf_counter() - t0
            if head[9:12] != b"200":
                state["errors"] += 1
            else:
                latencies.append(took)

    started = time.perf_counter()
    await asyncio.gather(*(loop(i, r, w) for i, (r, w) in enumerate(conns)))
    elapsed = time.perf_counter() - started
    for _, w in conns:
        w.close()
    return summarise(latencies, elapsed, state["errors"])


def http_api(port: int, levels: list[int], requests: int, seconds: float, k: int, rows: int,
             expected: dict, token: str | None = None, client: str = "python") -> dict:
    import asyncio

    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    ids = np.random.default_rng(1).integers(0, rows, size=100_000).tolist()
    headers = f"Authorization: Bearer {token}\r\n" if token else ""
    # the answers must be the Python API's, not just fast
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for qid, want in expected.items():
        conn.request("GET", f"/api/sets/{REF}/similar?id={qid}&k={k}",
                     headers={"Authorization": f"Bearer {token}"} if token else {})
        body = json.loads(conn.getresponse().read())
        if body["ids"] != want:
            raise SystemExit(f"HTTP answer for id {qid} differs from the Python API: {body['ids']} vs {want}")
    conn.close()
    paths = [f"/api/sets/{REF}/similar?id={i}&k={k}" for i in ids]
    run(_http_level(port, 4, 400, 10, paths, headers))  # warm-up: connections, caches
    out = {}
    for clients in levels:
        if client == "wrk":
            out[clients] = wrk_level(port, clients, min(seconds, 15.0), k, rows, token)
        else:
            out[clients] = run(_http_level(port, clients, requests, seconds, paths, headers))
        print(f"http ({client:>6}) clients={clients:>2}  {fmt(out[clients])}", flush=True)
    return out


WRK_SCRIPT = """
math.randomseed(1)
request = function()
  return wrk.format("GET", "/api/sets/%s/similar?id=" .. math.random(0, %d) .. "&k=%d", %s)
end
"""


def wrk_level(port: int, clients: int, seconds: float, k: int, rows: int, token: str | None) -> dict:
    """The same closed loop driven by wrk (one thread, ``clients`` keep-alive connections, a random id
    per request): a load generator in C, so the client's own CPU takes little of the 2 cores the
    server shares with it. Latency percentiles are wrk's."""
    import re

    headers = "{Authorization = 'Bearer %s'}" % token if token else "nil"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT % (REF, rows - 1, k, headers))
    try:
        run = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency", "-s", fh.name,
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True)
    finally:
        os.unlink(fh.name)
    text = run.stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        return round(float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], 2)

    done = int(re.search(r"(\d+) requests in ([\d.]+)s", text).group(1))
    elapsed = float(re.search(r"requests in ([\d.]+)s", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = int(bad.group(1)) if bad else 0
    return {"requests": done, "errors": errors, "seconds": elapsed, "throughput_rps": round(done / elapsed, 1),
            "p50_ms": ms("50"), "p99_ms": ms("99"), "mean_ms": None, "client": "wrk"}


def fmt(r: dict) -> str:
    return (f"{r['throughput_rps']:>8} req/s  p50 {r['p50_ms']:>7} ms  p99 {r['p99_ms']:>7} ms  "
            f"({r['requests']} requests in {r['seconds']}s, {r['errors']} errors)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--index", choices=["auto", "flat", "ivf", "hnsw"], default="hnsw",
                    help="faiss index of the published version (hnsw: the target's; auto: what a version gets by "
                         "default; flat: exact, scans every vector per query)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clients", default="1,8,32", help="concurrency levels, comma-separated")
    ap.add_argument("--requests", type=int, default=3000, help="request budget per level")
    ap.add_argument("--seconds", type=float, default=30.0, help="time budget per level")
    ap.add_argument("--home", type=Path, help="store home to build or reuse (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep a temporary home")
    ap.add_argument("--serve", action="append", default=None, metavar="ARGS",
                    help="extra `embstore serve` arguments, e.g. '--workers 2'; repeat to compare settings in one run")
    ap.add_argument("--token", action="store_true", help="serve with a token; clients send it")
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto",
                    help="HTTP load generator: wrk (C; apt-get install wrk), or this process's event loop; auto: wrk "
                         "when installed")
    ap.add_argument("--target-clients", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench_serve.json"))
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    settings = args.serve if args.serve is not None else [""]

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
        token = secrets.token_urlsafe(24) if args.token else None
        result["http"] = {}
        for setting in settings:
            port = free_port()
            started = time.perf_counter()
            if token:
                os.environ["EMBSTORE_TOKEN"] = token
            proc = start_server(home, port, home / "serve.log", shlex.split(setting))
            took = round(time.perf_counter() - started, 1)
            print(f"embstore serve {setting or '(defaults)'} up on 127.0.0.1:{port} in {took}s (preloaded)", flush=True)
            result["http"][setting or "defaults"] = {"server_start_seconds": took, **http_api(
                port, levels, args.requests, args.seconds, args.k, args.rows, expected, token, client)}
            proc.terminate()
            proc.wait(timeout=60)
            proc = None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.home is None and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    target = args.target_clients
    if target in result["python_api"]:
        api = result["python_api"][target]
        print(f"at {target} concurrent clients: Python API p50 {api['p50_ms']} ms, p99 {api['p99_ms']} ms, "
              f"{api['throughput_rps']} req/s")
        for setting, http in result["http"].items():
            if target in http:
                h = http[target]
                verdict = "meets" if h["p99_ms"] <= 5.0 else "misses"
                print(f"  HTTP /similar, serve {setting}: p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms "
                      f"({verdict} the 5 ms target), {h['throughput_rps']} req/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
