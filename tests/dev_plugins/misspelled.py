"""Implements a hook that does not exist: must fail loudly at start-up."""

from embstore.hookspecs import hookimpl


@hookimpl
def register_producer(register):  # missing "s"
    pass
