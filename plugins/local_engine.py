"""The local engine: inputs read and producers trained in this process (the default).

Inputs are files (CSV, parquet, or a sparse .npz for features) read by
embstore.inputs; the producer's own ``fit`` trains on them; the store writes the
version's Feast rows.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Sequence

from embstore.engine import Engine
from embstore.hookspecs import hookimpl

if TYPE_CHECKING:
    from embstore.inputs import Inputs, InputSpec


class LocalEngine(Engine):
    """Everything in this process: what `embstore run` always did."""

    name = "local"

    def inputs(self, specs: Sequence[InputSpec]) -> Inputs:
        from embstore.inputs import Inputs  # pandas and pyarrow's readers: not for commands that only read

        return Inputs(specs)

    def fit(self, producer, inputs, config, progress: bool) -> Any:
        accepts_progress = "progress" in inspect.signature(producer.fit).parameters
        return producer().fit(inputs, config, **({"progress": progress} if accepts_progress else {}))


@hookimpl
def register_engines(register) -> None:
    register(LocalEngine)
