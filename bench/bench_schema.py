"""Property-based run of `embstore serve`'s HTTP API from its own OpenAPI schema (schemathesis).

    python -m venv /tmp/st && /tmp/st/bin/pip install schemathesis      # once: its own venv
    python bench/bench_schema.py --schemathesis /tmp/st/bin/schemathesis [--max-examples 100] [--seed 1]

Publishes a small store whose set names are the schema's examples (``movies_item2vec``: integer
ids with a metadata table, two versions and ``prod``; ``words``: text ids; ``users``: a user set in
the items' space), serves it on a free loopback port with a token, and runs ``schemathesis run
.../openapi.json --checks all`` with the token (the ``ignored_auth`` check also sends requests
without it and expects the documented 401). Every phase runs: examples, coverage (boundary and
negative values), fuzzing and stateful.

Prints the run's figures (operations, test cases, failures by check) and writes schemathesis's
JSON report (``--out``). Exit status 1 when schemathesis found anything: a 500 (the only one the
schema documents is a checksum failure of stored files, which this store never has), a status
code, content type or body the schema does not describe, schema-valid data rejected or
schema-invalid data accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

DIM = 16


def build(home: Path) -> dict[str, Path]:
    """The store the schema's examples name, and a metadata table per set."""
    from embstore.embeddings import Embeddings
    from embstore.store import EmbeddingStore

    store = EmbeddingStore.init(home, progress=False)
    rng = np.random.default_rng(0)
    items = np.arange(1, 201, dtype=np.int64)
    store.publish("movies_item2vec", Embeddings(ids=items, vectors=rng.normal(size=(200, DIM)).astype(np.float32)),
                  promote="prod")
    store.publish("movies_item2vec", Embeddings(ids=items, vectors=rng.normal(size=(200, DIM)).astype(np.float32)))
    words = np.array([f"w{i}" for i in range(50)], dtype=object)
    store.publish("words", Embeddings(ids=words, vectors=rng.normal(size=(50, DIM)).astype(np.float32)), entity="word")
    store.publish("users", Embeddings(ids=np.arange(1, 21, dtype=np.int64),
                                      vectors=rng.normal(size=(20, DIM)).astype(np.float32)), entity="user_id")
    store.close()
    tables = {}
    for name, ids in (("movies_item2vec", items.tolist()), ("words", words.tolist()), ("users", list(range(1, 21)))):
        path = home.parent / f"{name}.csv"
        pd.DataFrame({"id": ids, "title": [f"{name} {i}" for i in ids]}).to_csv(path, index=False)
        tables[name] = path
    return tables


def serve(home: Path, tables: dict[str, Path], token: str, log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "embstore.cli", "--home", str(home), "serve", "--port", str(port),
           "--log-level", "warning", "--max-k", "100"]
    for name, path in tables.items():
        cmd += ["--metadata", f"{name}={path}:id"]
    env = dict(os.environ, EMBSTORE_TOKEN=token)
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"embstore serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/api/health", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"embstore serve did not start:\n{log.read_text()}")


# The one exception, stated to schemathesis: a query vector's length must be the dimension of the
# version it asks (422 otherwise), which no schema of the endpoint can say.
CONFIG = """
[[operations]]
include-path = "/api/sets/{ref}/recall/vector"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx", "422"]
"""


def figures(output: str) -> dict:
    """The summary schemathesis prints: test cases, failures by code, warnings."""
    import re

    out: dict = {}
    cases = re.search(r"(\d+) generated, (?:(\d+) found (\d+) unique failures?|(\d+) passed|[^,\n]*)"
                      r"(?:, (\d+) skipped)?", output)
    if cases:
        out["test_cases"] = int(cases.group(1))
        out["skipped"] = int(cases.group(5) or 0)
    out["failures"] = {m.group(2): int(m.group(3)) for m in re.finditer(r"❌ (ST\d+ )?([^:\n]+): (\d+)", output)
                       if not m.group(2).startswith(("Examples", "Coverage", "Fuzzing", "Stateful"))}
    out["warnings"] = [w.strip() for w in re.findall(r"⚠️ ([^\n]+)", output)]
    tested = re.search(r"Tested: (\d+)", output)
    out["operations"] = int(tested.group(1)) if tested else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schemathesis", default=shutil.which("schemathesis") or "schemathesis",
                    help="the schemathesis command (installed in a venv of its own)")
    ap.add_argument("--max-examples", type=int, default=50, help="test cases per operation and phase")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", default="1")
    ap.add_argument("--out", type=Path, default=Path("artifacts/bench_schema"))  # resolved before cwd changes
    ap.add_argument("--keep", action="store_true", help="keep the store and the server log")
    args = ap.parse_args()
    args.out = args.out.resolve()
    root = Path(tempfile.mkdtemp(prefix="bench-schema-"))
    token = secrets.token_urlsafe(24)
    proc = None
    try:
        tables = build(root / "home")
        proc, base = serve(root / "home", tables, token, root / "serve.log")
        args.out.mkdir(parents=True, exist_ok=True)
        (root / "schemathesis.toml").write_text(CONFIG)
        cmd = [args.schemathesis, "--config-file", str(root / "schemathesis.toml"), "run", f"{base}/openapi.json", "--checks", "all", "-H", f"Authorization: Bearer {token}",
               "--max-examples", str(args.max_examples), "--seed", str(args.seed), "--workers", args.workers,
               "--report", "junit,ndjson", "--report-dir", str(args.out), "--no-color",
               "--generation-database", "none", "--continue-on-failure"]
        started = time.monotonic()
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=root)  # its .schemathesis cache goes there
        took = time.monotonic() - started
        output = run.stdout + run.stderr
        (args.out / "schemathesis.txt").write_text(output.replace(token, "<token>"))
        print(output.replace(token, "<token>")[-6000:])
        found = figures(output) | {"exit_status": run.returncode, "seconds": round(took, 1), "seed": args.seed,
                                   "max_examples": args.max_examples}
        (args.out / "figures.json").write_text(json.dumps(found, indent=2) + "\n")
        print(f"schemathesis exit status {run.returncode} in {took:.0f} s: {found.get('operations')} operations, "
              f"{found.get('test_cases')} test cases, failures {found['failures'] or 'none'}"
              f"{', warnings: ' + '; '.join(found['warnings']) if found['warnings'] else ''}; "
              f"output in {args.out / 'schemathesis.txt'}")
        return 0 if run.returncode == 0 else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
