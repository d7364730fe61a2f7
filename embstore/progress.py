"""Progress on stderr for long work: bars when a person watches, silence in logs and pipes.

    from embstore.progress import bar, wanted

    with bar(n_rows, "online store", unit="rows", enabled=wanted(progress)) as b:
        for chunk in chunks:
            write(chunk); b.update(len(chunk))

``progress=None`` everywhere in embstore means "draw bars only when stderr is a
terminal", so a cron job's log stays clean; True or False force it.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator, Sequence


def wanted(progress: bool | None) -> bool:
    """Whether to draw bars: as asked, or (None) only when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


def new_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, **options: Any):
    """A tqdm bar on stderr that leaves no line behind; the caller closes it."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True,
                file=sys.stderr, **options)


@contextmanager
def bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, **options: Any) -> Iterator:
    b = new_bar(total, desc, unit, enabled, **options)
    try:
        yield b
    finally:
        b.close()


class Steps:
    """A bar over named steps of one job, e.g. the steps of a publish."""

    def __init__(self, steps: Sequence[str], desc: str, enabled: bool = True):
        self._bar = new_bar(len(steps), desc, unit="step", enabled=enabled)

    def done(self, step: str) -> None:
        self._bar.set_postfix_str(step)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
