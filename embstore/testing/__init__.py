"""The conformance kit: hold a producer or retriever to the embstore contract.

One call in a plugin's own tests, like scikit-learn's ``check_estimator``::

    from embstore.testing import check_producer, check_retriever

    def test_conforms():
        check_producer(MyProducer)                 # the kit generates small inputs
        check_retriever(MyRetriever)

    def test_conforms_on_our_data():
        check_producer(MyProducer, inputs={"table": "tests/data/clicks.csv"}, config={"trees": 5})

Every check runs; a failure does not stop the others. When any check fails,
``ConformanceError`` (an ``AssertionError``, so pytest shows it as a failed
assertion) lists every failed check with what was expected and what was found.
When all pass, the ``ConformanceReport`` is returned (``print(report)`` shows
each check as PASS, or SKIP with the reason).

Or one pytest test per check, like scikit-learn's ``parametrize_with_checks``::

    from embstore.testing import parametrize_with_checks

    @parametrize_with_checks([MyProducer, MyRetriever])
    def test_embstore_contract(check):
        check()

Test ids read ``producer:my_producer-fit: same seed gives identical vectors``;
a check whose prerequisite failed is skipped, naming it. The checks of one class
share its fits. ``producer_checks(cls, inputs=..., config=...)`` and
``retriever_checks(cls, config=...)`` yield the same (id, check) pairs for your own
``pytest.mark.parametrize``.

Inputs. Unless ``inputs=`` is given the kit writes small CSV files of the kinds
the producer needs, with planted structure and one shared id space: 60 users
with histories mostly inside one of 4 clusters of 10 items (``c<cluster>_i<item>``,
users ``u<n>``), an item graph with most edges inside a cluster, side
information (category, brand, multi-valued tags), 8 numeric features per item,
and a table of user-item events with categorical, numeric and 0/1 ``label``
columns. ``make_frames`` and ``make_inputs`` give the same data to your own tests.

Which kinds: a producer's ``requires``; with ``accepts`` as well in a second
scenario. A producer that requires nothing and accepts several kinds is taken
to need one of them: each accepted kind is a scenario of its own. A plugin
overrides this with a class attribute ``conformance_inputs`` (a list of
scenarios, each a list of kinds; the first is the main one).

Config. The kit fits with the producer's defaults, updated by the class
attribute ``conformance_config`` (a dict, e.g. ``{"epochs": 1}``, to keep the
run fast) and then by ``config=``. Retrievers likewise.

Modules: ``runner`` (checks, report, error), ``data`` (generated inputs),
``common`` (name and Config checks), ``producers``, ``retrievers`` (each
contract's ``check_*`` functions), ``parametrize`` (the pytest helper).
"""

from __future__ import annotations

from embstore.testing.data import make_frames, make_inputs, make_vectors
from embstore.testing.parametrize import parametrize_with_checks
from embstore.testing.producers import check_producer, producer_checks
from embstore.testing.retrievers import check_retriever, retriever_checks
from embstore.testing.runner import ConformanceError, ConformanceReport

__all__ = [
    "ConformanceError",
    "ConformanceReport",
    "check_producer",
    "check_retriever",
    "make_frames",
    "make_inputs",
    "make_vectors",
    "parametrize_with_checks",
    "producer_checks",
    "retriever_checks",
]
