"""Quality gates: evaluators score a published version, gates decide whether an alias may move to it.

    store.run("item2vec", "items", inputs, promote="prod",
              evaluate={"hit_rate": {"path": "heldout.csv", "k": 10}},
              gates=["hr@10>=0.05"])

    embstore run item2vec --set items --input interactions=train.csv --promote prod \\
        --evaluate hit_rate:path=heldout.csv,k=10 --gate "hr@10>=0.05"

The version is published first (all or nothing, as always), then every evaluator
runs on it and its metrics are stored in the version's ``evaluation`` metrics;
then each gate ``metric >= threshold`` (or ``<=``, ``>``, ``<``) is checked. Only
when all pass does ``promote`` move the alias. A failed gate leaves the alias
where it was and the version published but not promoted, with its metrics and
the gate results (``gates`` metrics) stored, and raises ``GateError`` naming
each failed metric, its value and the threshold (the CLI exits 1).

Evaluators are plugins like producers and retrievers: a plugin registers them
with the ``register_evaluators`` hook (built-ins: ``embstore_plugins.evaluators``
— ``hit_rate``, ``node_classification``, ``drift``). A gate looks its metric up
in the evaluators' results first, then in the version's own metrics by dotted
path (``alignment.residual_after<=0.5``). An evaluator may return None for a
metric that does not apply this time (drift when the alias does not exist yet);
a gate on it passes, marked "not applicable". A metric no evaluator produced
fails its gate.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from embstore.config import PluginConfig, parse_cli_value, parse_config
from embstore.errors import ConfigError, EmbstoreError, NotFoundError, PluginError, first_line
from embstore.evaluator import Evaluator, StoreView
from embstore.refs import check_alias_name

if TYPE_CHECKING:
    from embstore.backends.registry import Registry
    from embstore.catalogue import PluginCatalogue
    from embstore.refs import VersionInfo
    from embstore.versions.aliases import Aliases


class EvaluationError(EmbstoreError):
    """An evaluator failed on a published version; its alias did not move."""


class GateError(EvaluationError):
    """A version failed a quality gate; it stays published, its alias did not move.

    ``version`` is the version (with the evaluation stored in its metrics), ``results``
    the GateResult of every gate, ``alias`` the alias that was to move.
    """

    def __init__(self, message: str, version: "VersionInfo", results: list["GateResult"], alias: str | None):
        super().__init__(message)
        self.version = version
        self.results = results
        self.alias = alias

    @property
    def failed(self) -> list["GateResult"]:
        return [r for r in self.results if not r.passed]


# -- gates -------------------------------------------------------------------

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_GATE = re.compile(r"^\s*(?P<metric>[^<>=\s]+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>\S+)\s*$")


@dataclass(frozen=True)
class Gate:
    """``metric op threshold``, e.g. ``hr@10>=0.05`` or ``drift_mean_cosine>=0.8``."""

    metric: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, text: "str | Gate") -> "Gate":
        if isinstance(text, Gate):
            return text
        m = _GATE.match(str(text))
        threshold = None
        if m:
            try:
                threshold = float(m["value"])
            except ValueError:
                pass
        if not m or threshold is None or math.isnan(threshold):
            raise ConfigError(
                f"gate {text!r} is not METRIC>=NUMBER or METRIC<=NUMBER (also > and <), e.g. 'hr@10>=0.05'"
            )
        return cls(m["metric"], m["op"], threshold)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    value: float | None
    status: str  # passed | failed | not applicable | missing
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status in ("passed", "not applicable")

    def line(self) -> str:
        g = self.gate
        if self.status == "missing":
            return f"{g.metric} was not produced ({self.note}), gate {g} fails"
        if self.status == "not applicable":
            return f"{g.metric} does not apply ({self.note or 'evaluator returned None'}), gate {g} passes"
        verdict = "passes" if self.passed else "fails"
        return f"{g.metric} = {self.value:.6g}, threshold {g.op} {g.threshold:g}: {verdict}"

    def as_dict(self) -> dict:
        return {"gate": str(self.gate), "metric": self.gate.metric, "op": self.gate.op,
                "threshold": self.gate.threshold, "value": self.value, "status": self.status,
                "passed": self.passed, "note": self.note}


def _lookup(metrics: Mapping[str, Any], dotted: str) -> Any:
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def check_gates(gates: Iterable[Gate], evaluation: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[GateResult]:
    """Each gate against the evaluation results, else the version's metrics by dotted path."""
    out = []
    produced = ", ".join(sorted(evaluation)) or "no evaluator ran"
    for gate in gates:
        value = evaluation[gate.metric] if gate.metric in evaluation else _lookup(metrics, gate.metric)
        if value is _MISSING:
            out.append(GateResult(gate, None, "missing", f"produced: {produced}"))
        elif value is None:
            out.append(GateResult(gate, None, "not applicable"))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(GateResult(gate, None, "missing", f"{gate.metric} is {value!r}, not a number"))
        else:
            ok = _OPS[gate.op](float(value), gate.threshold)
            out.append(GateResult(gate, float(value), "passed" if ok else "failed"))
    return out


# -- what to evaluate --------------------------------------------------------


@dataclass(frozen=True)
class EvaluatorRun:
    """One evaluator with its validated config."""

    name: str
    cls: type[Evaluator]
    config: PluginConfig

    def as_dict(self) -> dict:
        return {"name": self.name, "config": self.config.model_dump(mode="json")}


_PAIRS = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")


def parse_evaluate_arg(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE`` from the CLI. A comma starts a new pair only when
    ``KEY=`` follows it, so values may hold commas (``ids=[1,2]``, ``path=a,b.csv``); values are
    parsed like ``--config`` values (numbers, booleans, YAML lists)."""
    name, _, rest = str(text).partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"--evaluate {text!r}: expected NAME:KEY=VALUE,..., e.g. hit_rate:path=heldout.csv,k=10")
    config: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in _PAIRS.split(rest))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--evaluate {text!r}: {pair!r} is not KEY=VALUE")
        if key.strip() in config:
            raise ConfigError(f"--evaluate {text!r}: key {key.strip()!r} given twice")
        config[key.strip()] = parse_cli_value(value.strip())
    return name, config


def _evaluate_items(evaluate: Any) -> list[tuple[str, Mapping[str, Any]]]:
    if not evaluate:
        return []
    if isinstance(evaluate, Mapping):
        return [(str(n), c or {}) for n, c in evaluate.items()]
    items = []
    for item in evaluate:
        if isinstance(item, str):
            items.append(parse_evaluate_arg(item))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            items.append((str(item[0]), item[1] or {}))
        else:
            raise ConfigError(f"evaluate entry {item!r}: give 'NAME:KEY=VALUE,...' or (name, config)")
    return items


@dataclass(frozen=True)
class Checks:
    """Validated evaluators and gates of one run; built before any training."""

    evaluators: tuple[EvaluatorRun, ...] = ()
    gates: tuple[Gate, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.evaluators or self.gates)

    @classmethod
    def prepare(cls, evaluate: Any = None, gates: Any = None, catalogue: "PluginCatalogue | None" = None,
                columns: Mapping[str, Mapping[str, str]] | None = None) -> "Checks":
        """From ``{name: config}``, ``["name:k=v,..."]`` or [(name, config)] and gate strings, with
        the evaluators looked up in ``catalogue``; unknown evaluators, bad configs and malformed
        gates are one ConfigError/PluginError. ``columns`` (input kind -> the run's column mapping)
        is the default ``columns`` of evaluators that read a file of that kind. A gate on a bare
        metric name needs an evaluator that can produce it: refused here, before any training,
        when none is given (the version's own metrics are named by dotted path)."""
        if isinstance(gates, str):
            gates = [gates]
        parsed_gates = tuple(Gate.parse(g) for g in gates or ())
        if isinstance(evaluate, Checks):
            return cls(evaluate.evaluators, evaluate.gates + parsed_gates)
        runs = []
        items = _evaluate_items(evaluate)
        if items:
            if catalogue is None:
                raise ConfigError("evaluators need the plugin catalogue to be looked up in")
            for name, config in items:
                ecls = catalogue.evaluator(name)
                config = dict(config or {})
                inherited = (columns or {}).get(ecls.reads) if ecls.reads else None
                if inherited and "columns" in ecls.Config.model_fields and "columns" not in config:
                    config["columns"] = dict(inherited)
                runs.append(EvaluatorRun(name, ecls, parse_config(ecls.Config, config, f"evaluator {name!r}")))
        if not runs:
            for gate in parsed_gates:
                if "." not in gate.metric:
                    raise ConfigError(
                        f"gate {gate} needs metric {gate.metric!r}, and no evaluator is given to produce it: add "
                        f"one, e.g. --evaluate hit_rate:path=heldout.csv,k=10 (a metric the version records "
                        f"itself is named by its dotted path, e.g. alignment.residual_after)")
        return cls(tuple(runs), parsed_gates)


# -- running them ------------------------------------------------------------


class Gatekeeper:
    """Runs a published version's evaluators, stores their metrics and the gate results, and moves
    the alias only when every gate passes. Evaluators are handed ``host``, the store's read API
    (embstore.evaluator.StoreView); the gatekeeper itself only writes metrics and aliases."""

    def __init__(self, registry: "Registry", aliases: "Aliases", host: StoreView):
        self.registry, self.aliases, self.host = registry, aliases, host

    def alias_now(self, set_name: str, alias: str | None) -> str:
        if not alias:
            return "no alias was to move"
        try:
            return f"{set_name}@{alias} still points at {self.registry.resolve(f'{set_name}@{alias}').ref}"
        except NotFoundError:
            return f"{set_name}@{alias} was not created"

    def evaluate(self, version: "VersionInfo", checks: Checks, promote: str | None = None) -> "VersionInfo":
        """Run the evaluators on a published version, store their metrics and the gate results,
        then move ``promote`` to it if every gate passes; GateError (alias untouched) if not."""
        if promote:
            check_alias_name(promote)
        record = {"evaluators": [r.as_dict() for r in checks.evaluators]}
        checked_at = datetime.now(timezone.utc).isoformat()
        evaluation = self.run_evaluators(version, checks, record, promote, checked_at)
        results = check_gates(checks.gates, evaluation, version.metrics)
        passed = all(r.passed for r in results)
        updated = self.registry.extend_metrics(version.set, version.number, {
            **record, "evaluation": evaluation,
            "gates": {"passed": passed, "alias": promote, "checked_at": checked_at,
                      "results": [r.as_dict() for r in results], "error": None},
        })
        if not passed:
            failed = "; ".join(r.line() for r in results if not r.passed)
            raise GateError(
                f"{version.ref} failed its quality gate(s): {failed}. {version.ref} is published but not promoted; "
                f"{self.alias_now(version.set, promote)}",
                updated, results, promote,
            )
        if promote:
            return self.aliases.promote(version.ref, promote)
        return updated

    def run_evaluators(self, version: "VersionInfo", checks: Checks, record: dict, promote: str | None,
                       checked_at: str) -> dict[str, float | None]:
        evaluation: dict[str, float | None] = {}
        produced_by: dict[str, str] = {}
        for run in checks.evaluators:
            try:
                got = _clean(run.name, run.cls().evaluate(self.host, version, run.config))
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, EmbstoreError) else str(exc)
                self.registry.extend_metrics(version.set, version.number, {
                    **record, "evaluation": evaluation,
                    "gates": {"passed": False, "alias": promote, "checked_at": checked_at, "results": [],
                              "error": f"evaluator {run.name!r} failed: {message}"},
                })
                raise EvaluationError(
                    f"evaluator {run.name!r} failed on {version.ref}: {first_line(exc, with_type=not isinstance(exc, EmbstoreError))}; "
                    f"{version.ref} is published but not promoted ({self.alias_now(version.set, promote)})"
                ) from exc
            for key in got:
                if key in produced_by:
                    raise EvaluationError(
                        f"evaluators {produced_by[key]!r} and {run.name!r} both produce metric {key!r}; "
                        f"{version.ref} is published but not promoted ({self.alias_now(version.set, promote)})"
                    )
                produced_by[key] = run.name
            evaluation.update(got)
        return evaluation


def _clean(name: str, metrics: Any) -> dict[str, float | None]:
    if not isinstance(metrics, Mapping):
        raise PluginError(f"evaluator {name!r} returned {type(metrics).__name__}, not a dict of metric name -> number")
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise PluginError(f"evaluator {name!r} returned {key}={value!r}, not a number") from None
            if not math.isfinite(value):
                raise PluginError(f"evaluator {name!r} returned {key}={value!r}; metrics must be finite")
        out[str(key)] = value
    return out
