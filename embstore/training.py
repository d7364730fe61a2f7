"""The epoch loop torch producers share: a fixed epoch budget with optional early stopping,
a progress bar with the loss, and the thread count.

    from embstore.training import EpochLoop

    loop = EpochLoop("graphsage", epochs=10, batches_per_epoch=n_batches, progress=None,
                     patience=2, min_delta=1e-3)
    with loop.threads(1):
        for epoch in loop:                     # stops early when the loss stalls
            total = 0.0
            for batch in batches:
                total += step(batch)
                loop.batch_done(running_loss=total / (i + 1))
            loop.epoch_done(total / n_batches)
    loop.metrics()                             # epoch_losses, epochs_run, stopped_early, seconds

``progress=None`` draws the bar only when stderr is a terminal (a cron job's log
stays clean); True or False force it. Early stopping: with ``patience`` set, the
loop ends once the epoch loss has not improved on the best so far by more than
``min_delta`` (relative) for ``patience`` epochs in a row.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

from embstore.progress import new_bar, wanted

log = logging.getLogger(__name__)


class EpochLoop:
    """``epochs`` passes of ``batches_per_epoch`` batches each, with a bar named ``name``."""

    def __init__(self, name: str, epochs: int, batches_per_epoch: int, progress: bool | None = None,
                 patience: int | None = None, min_delta: float = 0.0):
        self.name, self.epochs, self.patience, self.min_delta = name, epochs, patience, min_delta
        self.bar = new_bar(epochs * batches_per_epoch, name, unit="batch", enabled=wanted(progress))
        self.losses: list[float] = []
        self.epoch_seconds: list[float] = []
        self.stopped_early = False
        self._best = float("inf")
        self._stale = 0
        self._t0 = time.perf_counter()
        self._epoch_t0 = self._t0

    @staticmethod
    @contextmanager
    def threads(n: int | None) -> Iterator[None]:
        """torch uses ``n`` CPU threads inside the block (None: leave torch's setting)."""
        import torch

        before = torch.get_num_threads()
        if n is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def __iter__(self) -> Iterator[int]:
        try:
            for epoch in range(self.epochs):
                self._epoch_t0 = time.perf_counter()
                yield epoch
                if self._should_stop():
                    self.stopped_early = epoch + 1 < self.epochs
                    break
        finally:
            self.bar.close()

    def batch_done(self, running_loss: float | None = None) -> None:
        self.bar.update(1)
        if running_loss is not None and self.bar.n % 20 == 0:
            self.bar.set_postfix_str(f"epoch {len(self.losses) + 1}, loss {running_loss:.4f}", refresh=False)

    def epoch_done(self, loss: float) -> None:
        self.losses.append(float(loss))
        self.epoch_seconds.append(time.perf_counter() - self._epoch_t0)
        self.bar.set_postfix_str(f"epoch {len(self.losses)}, loss {loss:.4f}")
        log.info("%s epoch %d: loss %.5f (%.1f s)", self.name, len(self.losses), loss, self.epoch_seconds[-1])

    def _should_stop(self) -> bool:
        if self.patience is None or not self.losses:
            return False
        loss = self.losses[-1]
        improved = self._best == float("inf") or loss < self._best - self.min_delta * abs(self._best)
        if improved:
            self._best, self._stale = loss, 0
            return False
        self._stale += 1
        return self._stale >= self.patience

    def metrics(self) -> dict:
        return {
            "epoch_losses": [round(x, 6) for x in self.losses],
            "final_loss": self.losses[-1] if self.losses else None,
            "epochs_run": len(self.losses),
            "stopped_early": self.stopped_early,
            "epoch_seconds": [round(x, 3) for x in self.epoch_seconds],
            "train_seconds": round(time.perf_counter() - self._t0, 3),
        }
