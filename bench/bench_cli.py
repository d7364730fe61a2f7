"""Start-up cost of CLI calls: what a scheduled job pays per `embstore` process.

    python bench/bench_cli.py [--repeat 5]

Times, each in a fresh interpreter, the median of ``--repeat`` runs of:

1. ``import feast`` as Feast does it (typeguard instruments its classes, torch is imported);
2. Feast imported the way embstore does (``embstore.backends.feast_import.import_feast``);
3. ``embstore --help`` (no Feast, no plugins' heavy libraries);
4. ``embstore run item2vec`` on a tiny generated set (60 items), end to end: settings,
   registry, training, Feast offline and online writes, FAISS index;
5. ``embstore recall REF --id X`` on that set, and on 100,000 x 64 random vectors (exact index:
   the process reads and checksums 25 MB of vectors and 25 MB of index), a whole process each
   (target: 1 s); a ``-X importtime`` run of the first says whether Feast or Alembic was imported
   (the read path needs none of these, nor pandas or scipy); as its floor in the same run, a process that only imports what
   that path cannot do without (numpy, pyarrow.parquet, SQLAlchemy's ORM, pydantic, yaml,
   click, faiss) and loads the plugin catalogue.

Prints seconds and the ratio of (1) to (2), measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _seconds(args: list[str], repeat: int, cwd: Path | None = None) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, cwd=cwd, timeout=600)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    py = sys.executable
    cli = str(Path(py).with_name("embstore"))
    plain = _seconds([py, "-c", "import feast"], args.repeat)
    ours = _seconds([py, "-c", "from embstore.backends.feast_import import import_feast; import_feast()"], args.repeat)
    help_s = _seconds([cli, "--help"], args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([py, "-c", "from embstore.demo_data import planted_interactions; "
                        "planted_interactions(users=100, clusters=4, items_per_cluster=15, seed=3)"
                        f".to_csv({str(tmp / 'tiny.csv')!r}, index=False)"], check=True)
        subprocess.run([cli, "--home", str(tmp / "home"), "init"], check=True, capture_output=True)
        run_s = _seconds([cli, "--home", str(tmp / "home"), "run", "item2vec", "--set", "tiny", "--input",
                          f"interactions={tmp / 'tiny.csv'}", "--config", "epochs=1"], args.repeat)
        recall = [cli, "--home", str(tmp / "home"), "recall", "tiny", "--id", "c0_i0", "-k", "10"]
        recall_s = _seconds(recall, args.repeat)
        trace = subprocess.run([py, "-X", "importtime", "-m", "embstore.cli", *recall[1:]], check=True,
                               capture_output=True, text=True).stderr
        modules = {line.rsplit("|", 1)[1].strip() for line in trace.splitlines() if line.startswith("import time:")}
        heavy = sorted(m for m in ("feast", "alembic", "embstore.store", "torch", "pandas", "scipy") if m in modules)
        subprocess.run([py, "-c", "import numpy as np; from embstore.store import EmbeddingStore; "
                        "from embstore.embeddings import Embeddings; "
                        f"s = EmbeddingStore({str(tmp / 'home')!r}, progress=False); "
                        "s.publish('big', entity='big_id', embeddings=Embeddings(ids=np.arange(100_000), vectors=np.random.default_rng(0)"
                        ".normal(size=(100_000, 64)).astype('float32')))"], check=True, capture_output=True)
        big_s = _seconds([cli, "--home", str(tmp / "home"), "recall", "big", "--id", "7", "-k", "10"], args.repeat)
        floor_s = _seconds([py, "-c", "import atexit, gc; atexit.register(gc.freeze); "
                            "import numpy, pyarrow.parquet, sqlalchemy.orm, pydantic, yaml, click, "
                            "faiss; from embstore.catalogue import catalogue; catalogue(())"], args.repeat)
    print(f"median of {args.repeat} fresh processes:")
    print(f"  import feast, as Feast does it           {plain:6.2f} s")
    print(f"  import feast, as embstore does it        {ours:6.2f} s   ({plain / ours:.2f}x faster)")
    print(f"  embstore --help                          {help_s:6.2f} s")
    print(f"  embstore run item2vec, 60 items          {run_s:6.2f} s")
    print(f"  embstore recall, 60 items                {recall_s:6.2f} s   (target 1 s; imported of "
          f"feast, alembic, embstore.store, torch, pandas, scipy: {', '.join(heavy) or 'none'})")
    print(f"  embstore recall, 100,000 x 64 (flat)     {big_s:6.2f} s")
    print(f"  its imports and the catalogue alone      {floor_s:6.2f} s   (recall of 60 items: "
          f"{recall_s / floor_s:.2f}x that)")


if __name__ == "__main__":
    main()
