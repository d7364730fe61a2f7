"""Fault injection for tests: kill the process (or raise) right after a named publish step.

    EMBSTORE_FAULT_AFTER=online embstore run ...         # SIGKILL after the online step
    EMBSTORE_FAULT_AFTER=index_shard:raise ...          # RuntimeError where "index_shard" is reached

Publishing (embstore.versions.publishing) calls ``fault_after`` after each of its steps; an engine
may call it inside a step of its own (the spark engine after each index shard on the executors,
and after all of them on the driver), so that a test can prove the publish stays all or nothing
there too. Code on another machine cannot see this process's environment: read ``fault_spec()``
here and pass it along.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "EMBSTORE_FAULT_AFTER"  # "step" (SIGKILL) or "step:raise" (RuntimeError)


def fault_spec() -> str | None:
    """The fault asked for in this process's environment, to hand to code running elsewhere."""
    return os.environ.get(FAULT_ENV) or None


def fault_after(step: str, spec: str | None = None) -> None:
    """Kill this process, or raise, if ``spec`` (default: the environment's) names ``step``."""
    spec = fault_spec() if spec is None else spec
    if not spec:
        return
    target, _, mode = spec.partition(":")
    if target == step:
        if mode == "raise":
            raise RuntimeError(f"injected fault after step {step!r}")
        os.kill(os.getpid(), signal.SIGKILL)
