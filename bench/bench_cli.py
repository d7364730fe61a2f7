"""Start-up cost of CLI calls: what a scheduled job pays per `embstore` process.

    python bench/bench_cli.py [--repeat 5]

Times, each in a fresh interpreter, the median of ``--repeat`` runs of:

1. ``import feast`` as Feast does it (typeguard instruments its classes, torch is imported);
2. Feast imported the way embstore does (``embstore.backends.feast_import.import_feast``);
3. ``embstore --help`` (no Feast, no plugins' heavy libraries);
4. ``embstore run item2vec`` on a tiny generated set (60 items), end to end: settings,
   registry, training, Feast offline and online writes, FAISS index.

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
    print(f"median of {args.repeat} fresh processes:")
    print(f"  import feast, as Feast does it           {plain:6.2f} s")
    print(f"  import feast, as embstore does it        {ours:6.2f} s   ({plain / ours:.2f}x faster)")
    print(f"  embstore --help                          {help_s:6.2f} s")
    print(f"  embstore run item2vec, 60 items          {run_s:6.2f} s")


if __name__ == "__main__":
    main()
