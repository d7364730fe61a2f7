"""One pytest test id per conformance check: ``parametrize_with_checks``.

    @parametrize_with_checks([MyProducer, MyRetriever])
    def test_embstore_contract(check):
        check()

gives ids such as ``producer:my_producer-fit: same seed gives identical vectors``.
A check whose prerequisite failed is shown as skipped, naming the prerequisite.
For ``inputs=`` or ``config=``, parametrize over ``producer_checks(cls, ...)`` or
``retriever_checks(cls, ...)`` yourself; they yield the same (id, check) pairs.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from embstore.producer import Producer
from embstore.retriever import Retriever
from embstore.testing.producers import producer_checks
from embstore.testing.retrievers import retriever_checks
from embstore.testing.runner import BoundCheck


def plugin_checks(plugins: Iterable[type]) -> Iterator[tuple[str, BoundCheck]]:
    """(test id, check) for every check of every Producer or Retriever class in ``plugins``."""
    for cls in plugins:
        if isinstance(cls, type) and issubclass(cls, Retriever):
            yield from retriever_checks(cls)
        elif isinstance(cls, type) and issubclass(cls, Producer):
            yield from producer_checks(cls)
        else:
            raise TypeError(f"parametrize_with_checks takes Producer or Retriever subclasses, got {cls!r}")


def parametrize_with_checks(plugins: Iterable[type]) -> Any:
    """A ``pytest.mark.parametrize("check", ...)`` decorator: one test per check of each class.

    The checks of one class share their fits (and indexes), so this costs about
    what ``check_producer`` / ``check_retriever`` cost for the same classes.
    """
    import pytest  # a test dependency only: imported when a test module asks for it

    params = [pytest.param(bound, id=check_id) for check_id, bound in plugin_checks(plugins)]
    return pytest.mark.parametrize("check", params)
