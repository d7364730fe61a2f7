"""Progress on stderr for long work; silent when not asked for (tests, pipes)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence


@contextmanager
def bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> Iterator:
    from tqdm.auto import tqdm

    b = tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True)
    try:
        yield b
    finally:
        b.close()


class Steps:
    """A bar over named steps of one job, e.g. the steps of a publish."""

    def __init__(self, steps: Sequence[str], desc: str, enabled: bool = True):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=len(steps), desc=desc, unit="step", disable=not enabled, leave=False)

    def done(self, step: str) -> None:
        self._bar.set_postfix_str(step)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
