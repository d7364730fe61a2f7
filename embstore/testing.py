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
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from embstore.config import PluginConfig, parse_config
from embstore.embeddings import Embeddings
from embstore.errors import ConfigError, EmbstoreError
from embstore.inputs import INPUT_KINDS, Inputs, InputSpec
from embstore.producer import Producer
from embstore.retriever import Retriever, RetrieverConfig

__all__ = [
    "ConformanceError",
    "ConformanceReport",
    "check_producer",
    "check_retriever",
    "make_frames",
    "make_inputs",
    "make_vectors",
]

UNKNOWN_KEY = "no_such_option_for_conformance"
METRICS = ("ip", "cosine", "l2")


# --------------------------------------------------------------------------- report


@dataclass
class ConformanceReport:
    """What one kit run found: check names that passed, failed (with why) and were skipped."""

    subject: str
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [f"conformance of {self.subject}: {len(self.passed)} passed, "
                 f"{len(self.failed)} failed, {len(self.skipped)} skipped"]
        lines += [f"  FAIL {name}: {why}" for name, why in self.failed]
        lines += [f"  PASS {name}" for name in self.passed]
        lines += [f"  SKIP {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


class ConformanceError(AssertionError):
    """One or more conformance checks failed; ``report`` holds them all."""

    def __init__(self, report: ConformanceReport):
        self.report = report
        failures = "\n".join(f"  - {name}: {why}" for name, why in report.failed)
        super().__init__(
            f"{report.subject} fails {len(report.failed)} of "
            f"{len(report.failed) + len(report.passed)} conformance checks:\n{failures}"
        )


class _Failed(Exception):
    """Raised inside a check to fail it with a message (an AssertionError would do too)."""


class _Skip(Exception):
    """Raised inside a check to skip it with a reason."""


class _Runner:
    """Runs named checks, records each outcome, and skips checks whose prerequisites failed."""

    def __init__(self, subject: str):
        self.report = ConformanceReport(subject)
        self._failed: set[str] = set()

    def run(self, name: str, fn: Callable[[], Any], needs: Iterable[str] = ()) -> Any:
        broken = [n for n in needs if n in self._failed]
        if broken:
            self.report.skipped.append((name, f"needs {', '.join(repr(b) for b in broken)}"))
            self._failed.add(name)
            return None
        started = time.perf_counter()
        try:
            result = fn()
        except _Skip as exc:
            self.report.skipped.append((name, str(exc)))
            self._failed.add(name)
            return None
        except (_Failed, AssertionError) as exc:
            self._fail(name, str(exc) or type(exc).__name__)
            return None
        except Exception as exc:  # a crash inside a check is a failure of that check, not of the kit
            self._fail(name, f"unexpected {_describe(exc)}")
            return None
        self.report.seconds[name] = time.perf_counter() - started
        self.report.passed.append(name)
        return result

    def _fail(self, name: str, why: str) -> None:
        self._failed.add(name)
        self.report.failed.append((name, why))

    def finish(self) -> ConformanceReport:
        if self.report.failed:
            raise ConformanceError(self.report)
        return self.report


def _failing(message: str) -> Callable[[], None]:
    """A check that fails with ``message``."""
    def check() -> None:
        raise _Failed(message)

    return check


def _describe(exc: BaseException) -> str:
    """``TypeName: message (at file:line)`` of where the exception was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    # the innermost frame of the plugin's own code says more than one inside pandas or numpy
    own = [f for f in frames if "site-packages" not in f.filename and "dist-packages" not in f.filename
           and Path(f.filename).resolve() != Path(__file__).resolve()]
    frame = (own or frames)[-1] if frames else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


# --------------------------------------------------------------------------- data

_USERS, _CLUSTERS, _PER_CLUSTER, _HISTORY = 60, 4, 10, 12
_FEATURES = 8


def _item_ids(id_type: str) -> list:
    if id_type == "int":
        return [1000 + c * 100 + i for c in range(_CLUSTERS) for i in range(_PER_CLUSTER)]
    return [f"c{c}_i{i}" for c in range(_CLUSTERS) for i in range(_PER_CLUSTER)]


def make_frames(kinds: Iterable[str] = INPUT_KINDS, *, seed: int = 0, id_type: str = "str") -> dict[str, pd.DataFrame]:
    """Small input tables of ``kinds`` with planted clusters, in canonical columns.

    ``id_type`` "str" gives ids ``u<n>`` and ``c<cluster>_i<item>``; "int" gives
    users 1..60 and items ``1000 + 100*cluster + item``. All kinds share the item ids:
    interactions (user_id, item_id, timestamp, rating), edges (src, dst, weight),
    side_info (item_id, category, brand, tags with ``a|b`` cells), features (id, f0..f7),
    table (user_id, item_id, device, hour, price, label with 0/1).
    """
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in INPUT_KINDS]
    if unknown:
        raise ValueError(f"unknown input kind(s) {unknown}; known kinds: {', '.join(INPUT_KINDS)}")
    if id_type not in ("str", "int"):
        raise ValueError(f"id_type must be 'str' or 'int', got {id_type!r}")
    rng = np.random.default_rng(seed)
    items = _item_ids(id_type)
    cluster = np.repeat(np.arange(_CLUSTERS), _PER_CLUSTER)
    n_items = len(items)

    # interactions: each user mostly consumes items of one favourite cluster
    rows, t0 = [], 1_700_000_000
    favourite = rng.integers(_CLUSTERS, size=_USERS)
    for u in range(_USERS):
        for j in range(int(rng.integers(_HISTORY // 2, _HISTORY * 2))):
            c = favourite[u] if rng.random() > 0.1 else int(rng.integers(_CLUSTERS))
            item = items[c * _PER_CLUSTER + int(rng.integers(_PER_CLUSTER))]
            user = u + 1 if id_type == "int" else f"u{u}"
            rows.append((user, item, t0 + u * 10_000 + j * 60, float(rng.integers(1, 6))))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])

    # edges: three distinct out-neighbours per item, nine in ten inside its cluster
    src, dst = [], []
    for a in range(n_items):
        same = [b for b in range(n_items) if cluster[b] == cluster[a] and b != a]
        other = [b for b in range(n_items) if cluster[b] != cluster[a]]
        chosen: set[int] = set()
        while len(chosen) < 3:
            pool = same if rng.random() > 0.1 else other
            chosen.add(int(pool[rng.integers(len(pool))]))
        for b in sorted(chosen):
            src.append(items[a])
            dst.append(items[b])
    edges = pd.DataFrame({"src": src, "dst": dst, "weight": rng.integers(1, 4, size=len(src)).astype(float)})

    side_info = pd.DataFrame({
        "item_id": items,
        "category": [f"cat{c}" for c in cluster],
        "brand": [f"brand{int(b)}" for b in rng.integers(6, size=n_items)],
        "tags": [f"t{c}|t{int(x)}" for c, x in zip(cluster, rng.integers(10, size=n_items))],
    })

    centres = rng.normal(scale=3.0, size=(_CLUSTERS, _FEATURES))
    values = centres[cluster] + rng.normal(size=(n_items, _FEATURES))
    features = pd.DataFrame({"id": items, **{f"f{j}": values[:, j].round(4) for j in range(_FEATURES)}})

    # table: an event log for tabular producers; label 1 mostly when the item is in the user's cluster
    sample = interactions.sample(n=min(400, len(interactions)), random_state=seed).reset_index(drop=True)
    item_cluster = dict(zip(items, cluster))
    user_fav = {(u + 1 if id_type == "int" else f"u{u}"): favourite[u] for u in range(_USERS)}
    shown = [items[int(i)] for i in rng.integers(n_items, size=len(sample))]
    hit = np.array([item_cluster[i] == user_fav[u] for u, i in zip(sample["user_id"], shown)])
    label = np.where(rng.random(len(sample)) < 0.9, hit, ~hit).astype(int)
    table = pd.DataFrame({
        "user_id": sample["user_id"],
        "item_id": shown,
        "device": rng.choice(["web", "ios", "android"], size=len(sample)),
        "hour": rng.integers(24, size=len(sample)),
        "price": (rng.gamma(2.0, 10.0, size=len(sample))).round(2),
        "label": label,
    })
    frames = {"interactions": interactions, "edges": edges, "side_info": side_info,
              "features": features, "table": table}
    return {k: frames[k] for k in kinds}


def _tiny(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The smallest consistent inputs: one interaction, one edge, one table row, two items."""
    out = {}
    if "edges" in frames:
        a, b = frames["edges"]["src"].iloc[0], frames["edges"]["dst"].iloc[0]
    else:
        a = b = frames["interactions"]["item_id"].iloc[0] if "interactions" in frames else None
    for kind, frame in frames.items():
        if kind in ("interactions", "edges", "table"):
            out[kind] = frame.iloc[:1]
        else:
            key = "item_id" if kind == "side_info" else "id"
            keep = frame[frame[key].isin([a, b])]
            out[kind] = keep if len(keep) else frame.iloc[:1]
    if "interactions" in out and a is not None:
        out["interactions"] = out["interactions"].assign(item_id=[a])
    return out


def _write(directory: Path, frames: Mapping[str, pd.DataFrame], tag: str = "") -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, frame in frames.items():
        path = directory / f"{kind}{tag}.csv"
        frame.to_csv(path, index=False)
        paths[kind] = path
    return paths


def make_inputs(directory: str | Path, kinds: Iterable[str] = INPUT_KINDS, *, seed: int = 0,
                id_type: str = "str") -> dict[str, Path]:
    """Write ``make_frames(kinds)`` as CSV files into ``directory``; returns kind -> path."""
    return _write(Path(directory), make_frames(kinds, seed=seed, id_type=id_type))


def make_vectors(n: int = 120, dim: int = 16, *, clusters: int = 6, seed: int = 0) -> np.ndarray:
    """Unit-length float32 vectors around ``clusters`` centres (so ip, cosine and l2 agree on top-1)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + rng.normal(scale=0.5, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- shared checks


def _name_ok(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and name.replace("_", "").replace("-", "").isalnum()


def _check_config_class(r: _Runner, cls: type, base: type, kind: str) -> None:
    config_cls = getattr(cls, "Config", None)

    def config_class() -> None:
        if not (isinstance(config_cls, type) and issubclass(config_cls, base)):
            raise _Failed(f"{cls.__name__}.Config must be a {base.__name__} subclass, got {config_cls!r}")
        if config_cls.model_config.get("extra") != "forbid":
            raise _Failed(f"{config_cls.__name__} allows extra keys; keep PluginConfig's extra='forbid'")

    def defaults() -> None:
        required = [n for n, f in config_cls.model_fields.items() if f.is_required()]
        if required:
            raise _Failed(f"{config_cls.__name__} fields without a default: {', '.join(required)}; "
                          "every option needs one so `embstore run` works with no --config")
        config_cls()

    def descriptions() -> None:
        missing = [n for n, f in config_cls.model_fields.items() if not (f.description or "").strip()]
        if missing:
            raise _Failed(f"{config_cls.__name__} fields without a description: {', '.join(missing)}; "
                          "use pydantic.Field(default, description='...')")

    def unknown_key() -> None:
        try:
            parse_config(config_cls, {UNKNOWN_KEY: 1}, f"{kind} {cls.name!r}")
        except ConfigError as exc:
            if UNKNOWN_KEY not in str(exc):
                raise _Failed(f"ConfigError does not name the unknown key: {exc}") from None
            return
        raise _Failed(f"config key {UNKNOWN_KEY!r} was accepted; unknown keys must be a ConfigError")

    r.run("config: is a " + base.__name__, config_class)
    r.run("config: every field has a default", defaults, needs=["config: is a " + base.__name__])
    r.run("config: every field has a description", descriptions, needs=["config: is a " + base.__name__])
    r.run("config: unknown key is a ConfigError", unknown_key, needs=["config: is a " + base.__name__])


def _check_config_values(r: _Runner, cls: type, values: Mapping[str, Any], kind: str) -> Any:
    """Parse the kit's config and check it survives the JSON round trip a version row makes."""
    needs = ["config: is a " + (PluginConfig if kind == "producer" else RetrieverConfig).__name__]

    def parse() -> Any:
        try:
            return parse_config(cls.Config, values, f"{kind} {cls.name!r}")
        except ConfigError as exc:
            raise _Failed(f"the kit's config {dict(values)!r} is rejected: {exc}") from None

    cfg = r.run("config: the test config parses", parse, needs=needs)

    def round_trip() -> None:
        dumped = cfg.model_dump(mode="json")
        again = parse_config(cls.Config, dumped, f"{kind} {cls.name!r}")
        if again != cfg:
            raise _Failed(f"config {dumped} read back from JSON is {again.model_dump(mode='json')}; the version "
                          "row stores the config as JSON, so it must read back the same")

    r.run("config: JSON round trip (as stored in the version row)", round_trip,
          needs=["config: the test config parses"])
    return cfg


def _merged_config(cls: type, config: Mapping[str, Any] | None) -> dict:
    base = getattr(cls, "conformance_config", None) or {}
    if not isinstance(base, Mapping):
        raise _Failed(f"{cls.__name__}.conformance_config must be a dict, got {type(base).__name__}")
    return {**dict(base), **dict(config or {})}


# --------------------------------------------------------------------------- producers


def _ordered(kinds: Iterable[str]) -> list[str]:
    """Known input kinds in the usual order, then any others."""
    kinds = set(kinds)
    return [k for k in INPUT_KINDS if k in kinds] + sorted(str(k) for k in kinds - set(INPUT_KINDS))


def _scenarios(cls: type[Producer], inputs: Mapping[str, Any] | None) -> list[tuple[str, ...]]:
    """The input kinds of each fit scenario; the first is the main one."""
    if inputs is not None:  # the caller's kinds, plus generated ones for anything else required
        return [tuple(_ordered(set(cls.requires) | set(inputs)))]
    declared = getattr(cls, "conformance_inputs", None)
    if declared:
        return [tuple(s) for s in declared]
    ordered = _ordered
    requires = ordered(cls.requires)
    accepts = [k for k in ordered(cls.accepts) if k not in requires]
    if requires:
        return [tuple(requires)] + ([tuple(requires + accepts)] if accepts else [])
    if accepts:
        return [(k,) for k in accepts]
    return [()]


def _results(cls: type[Producer], result: Any) -> dict[str, Embeddings]:
    """role -> validated Embeddings (role '' for a single-entity producer), or _Failed saying what is wrong."""
    entities = cls.entities
    if entities:
        if not isinstance(result, Mapping) or set(result) != set(entities):
            got = sorted(result) if isinstance(result, Mapping) else type(result).__name__
            raise _Failed(f"fit must return {{role: Embeddings}} for roles {sorted(entities)}, got {got}")
        items = list(result.items())
    else:
        if not isinstance(result, Embeddings):
            raise _Failed(f"fit must return Embeddings, got {type(result).__name__}")
        items = [("", result)]
    out = {}
    for role, emb in items:
        where = f" for role {role!r}" if role else ""
        if not isinstance(emb, Embeddings):
            raise _Failed(f"fit returned {type(emb).__name__}{where}, not Embeddings")
        try:
            out[role] = emb.validated()
        except EmbstoreError as exc:
            raise _Failed(f"fit returned vectors{where} that cannot be published: {exc}") from None
    return out


def _input_ids(frames: Mapping[str, pd.DataFrame]) -> set[str]:
    """Every id a producer could legitimately return for these inputs, as strings."""
    ids: set[str] = set()
    columns = {"interactions": ("user_id", "item_id"), "edges": ("src", "dst"),
               "side_info": ("item_id",), "features": ("id",)}
    for kind, frame in frames.items():
        if kind == "table":
            for col in frame.columns:
                ids.update(str(v) for v in frame[col].tolist())
            ids.update(str(i) for i in range(len(frame)))
        else:
            for col in columns.get(kind, ()):
                if col in frame:
                    ids.update(str(v) for v in frame[col].tolist())
    return ids


def _label(kinds: Iterable[str]) -> str:
    kinds = list(kinds)
    return "+".join(kinds) if kinds else "no inputs"


def check_producer(producer: type[Producer], inputs: Mapping[str, Any] | None = None,
                   config: Mapping[str, Any] | None = None, *, seed: int = 0,
                   workdir: str | Path | None = None) -> ConformanceReport:
    """Run a Producer class through the whole contract; raise ConformanceError listing every failure.

    producer: the Producer subclass (not an instance).
    inputs:   None (the kit generates data of the kinds the producer needs), or a mapping
              kind -> path, DataFrame (written to CSV by the kit) or None (generate this kind);
              required kinds left out are generated. With your own files the kit cannot know their ids: the "ids come from the
              inputs" check covers generated and DataFrame inputs only.
    config:   config values for the fits, over ``conformance_config`` and the defaults.
    seed:     seed of the generated data.
    workdir:  where input files and scratch go (a temporary directory by default).

    Returns the ConformanceReport when every check passes.
    """
    cls = producer
    r = _Runner(f"producer {getattr(cls, 'name', '?')!r} ({getattr(cls, '__module__', '?')}."
                f"{getattr(cls, '__qualname__', cls)!s})")
    if not (isinstance(cls, type) and issubclass(cls, Producer)):
        r.run("class: is a Producer subclass", _failing(f"{cls!r} is not a Producer subclass (pass the class itself)"))
        return r.finish()
    r.run("class: is a Producer subclass", lambda: None)

    def name() -> None:
        if not _name_ok(getattr(cls, "name", None)):
            raise _Failed(f"name must be a string of letters, digits, '_' or '-', e.g. 'item2vec'; "
                          f"got {getattr(cls, 'name', None)!r}")

    def kinds() -> None:
        for attr in ("requires", "accepts"):
            value = getattr(cls, attr)
            if isinstance(value, str) or not isinstance(value, (set, frozenset)):
                raise _Failed(f"{attr} must be a frozenset of input kinds, got {value!r}")
            unknown = sorted(set(value) - set(INPUT_KINDS))
            if unknown:
                raise _Failed(f"{attr} names unknown input kind(s) {unknown}; known kinds: {', '.join(INPUT_KINDS)}")

    def entity() -> None:
        if not (isinstance(cls.entity, str) and cls.entity.isidentifier()):
            raise _Failed(f"entity must be a join-key column name like 'item_id', got {cls.entity!r}")
        if cls.entities is not None:
            if not isinstance(cls.entities, Mapping) or not cls.entities:
                raise _Failed(f"entities must be None or a non-empty {{role: join_key}} mapping, got {cls.entities!r}")
            bad = [f"{k!r}: {v!r}" for k, v in cls.entities.items()
                   if not (isinstance(k, str) and k.isidentifier() and isinstance(v, str) and v.isidentifier())]
            if bad:
                raise _Failed(f"entities roles and join keys must be identifiers, got {', '.join(bad)}")

    def instantiable() -> None:
        try:
            cls()
        except TypeError as exc:
            raise _Failed(f"{cls.__name__}() must work with no arguments (the store calls cls()): {exc}") from None

    r.run("class: name", name)
    r.run("class: requires and accepts are known input kinds", kinds)
    r.run("class: entity and entities", entity)
    r.run("class: instantiable with no arguments", instantiable)
    _check_config_class(r, cls, PluginConfig, "producer")
    values = r.run("config: conformance_config is a dict", lambda: _merged_config(cls, config))
    cfg = _check_config_values(r, cls, values or {}, "producer") if values is not None else None
    fit_needs = ["class: name", "class: requires and accepts are known input kinds", "class: entity and entities",
                 "class: instantiable with no arguments", "config: the test config parses"]

    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="embstore-conformance-")))
        root.mkdir(parents=True, exist_ok=True)
        _producer_fits(r, cls, cfg, inputs, seed, root, fit_needs)
    return r.finish()


def _producer_fits(r: _Runner, cls: type[Producer], cfg: Any, inputs: Mapping[str, Any] | None,
                   seed: int, root: Path, needs: list[str]) -> None:
    try:
        scenarios = _scenarios(cls, inputs)
    except Exception as exc:  # a broken requires/accepts is already a failed check
        r.report.skipped.append(("fit", f"cannot tell which inputs to generate: {_describe(exc)}"))
        return

    def files_for(kinds: tuple[str, ...], tag: str, id_type: str = "str",
                  transform: Callable[[dict], dict] | None = None) -> tuple[dict[str, Path], dict | None]:
        """kind -> path for a fit, and the frames behind them (None when a caller's file is used)."""
        wanted = {k: None for k in kinds}
        given = dict(inputs or {})
        generate = [k for k in kinds if given.get(k) is None]
        unknown = [k for k in generate if k not in INPUT_KINDS]
        if unknown:
            raise _Skip(f"the kit cannot generate input kind(s) {unknown}; pass inputs={{kind: path}}")
        frames = make_frames(generate, seed=seed, id_type=id_type) if generate else {}
        for k in kinds:
            if isinstance(given.get(k), pd.DataFrame):
                frames[k] = given[k]
        if transform is not None:
            frames = transform(frames)
        paths = _write(root / tag, frames)
        own_files = {k: Path(v) for k, v in given.items() if k in wanted and not isinstance(v, pd.DataFrame)
                     and v is not None}
        paths.update(own_files)
        return paths, (None if own_files else frames)

    def fit(paths: Mapping[str, Path], config: Any = None) -> Any:
        specs = [InputSpec(kind, path) for kind, path in paths.items()]
        data = Inputs(specs)
        data.require(cls.requires, cls.name)
        data.reject_unused(cls.requires | cls.accepts, cls.name)
        return cls().fit(data, cfg if config is None else config)

    def fit_valid(kinds: tuple[str, ...], tag: str, id_type: str = "str") -> tuple[dict[str, Embeddings], dict | None]:
        paths, frames = files_for(kinds, tag, id_type)
        try:
            result = fit(paths)
        except EmbstoreError as exc:
            if inputs is not None:
                raise _Failed(f"fit on the given {_label(kinds)} inputs raised {_describe(exc)}") from None
            raise _Failed(
                f"fit on the kit's generated {_label(kinds)} inputs raised {_describe(exc)}. If the producer "
                "needs columns or data the kit does not generate, pass your own: check_producer(cls, "
                "inputs={'kind': path}) (see docs/plugins.md)"
            ) from None
        return _results(cls, result), frames

    main = scenarios[0]
    main_name = f"fit: {_label(main)} gives valid Embeddings"
    first: dict = {}

    def main_fit() -> None:
        first["results"], first["frames"] = fit_valid(main, "main")

    r.run(main_name, main_fit, needs=needs)

    def ids_from_inputs() -> None:
        if first.get("frames") is None:
            raise _Skip("inputs are the caller's files; the kit does not know their ids")
        known = _input_ids(first["frames"])
        for role, emb in first["results"].items():
            strange = [i for i in emb.ids.tolist() if str(i) not in known]
            if strange:
                where = f" for role {role!r}" if role else ""
                raise _Failed(f"{len(strange)} of {len(emb)} ids{where} are not in the inputs, e.g. "
                              f"{strange[:3]}; return ids as they appear in the input columns")

    r.run("fit: ids come from the inputs", ids_from_inputs, needs=[main_name])

    def deterministic() -> None:
        if "seed" not in cls.Config.model_fields:
            raise _Skip("the config has no 'seed' field; a producer with randomness should take one")
        paths, _ = files_for(main, "main")
        again = _results(cls, fit(paths))
        for role, emb in first["results"].items():
            other = again[role]
            where = f" (role {role!r})" if role else ""
            if emb.ids.shape != other.ids.shape or not np.array_equal(emb.ids, other.ids):
                raise _Failed(f"two fits with seed={cfg.seed} returned different ids or id order{where}")
            if not np.array_equal(emb.vectors, other.vectors):
                diff = float(np.max(np.abs(emb.vectors - other.vectors)))
                raise _Failed(f"two fits with seed={cfg.seed} returned different vectors{where} "
                              f"(largest difference {diff:.3g}); seed every random source, single-threaded "
                              "by default, or document where the library does not allow it")

    r.run("fit: same seed gives identical vectors", deterministic, needs=[main_name])

    def integer_ids() -> None:
        if inputs is not None and any(v is not None for v in inputs.values()):
            raise _Skip("inputs are the caller's; integer ids are tried only on generated inputs")
        results, frames = fit_valid(main, "int_ids", id_type="int")
        known = _input_ids(frames)
        for role, emb in results.items():
            if emb.ids.dtype.kind != "i":
                raise _Failed(f"integer input ids came back as {emb.ids.dtype} ({emb.ids[:3].tolist()}); "
                              "keep the ids the inputs give (Inputs parses them as int64)")
            strange = [i for i in emb.ids.tolist() if str(i) not in known]
            if strange:
                raise _Failed(f"ids not in the inputs, e.g. {strange[:3]}")

    r.run("fit: integer ids", integer_ids, needs=[main_name])

    for extra in scenarios[1:]:
        r.run(f"fit: {_label(extra)} gives valid Embeddings",
              lambda extra=extra: fit_valid(extra, "with_" + "_".join(extra)), needs=needs)

    def empty(kind: str) -> None:
        def header_only(frames: dict) -> dict:
            return {k: (f.iloc[:0] if k == kind else f) for k, f in frames.items()}

        if inputs is not None and not isinstance(inputs.get(kind), (pd.DataFrame, type(None))):
            paths, _ = files_for(main, f"empty_{kind}")
            own = pd.read_csv(paths[kind], nrows=0) if str(paths[kind]).endswith((".csv", ".csv.gz")) else None
            if own is None:
                raise _Skip(f"your {kind} input is not CSV; the kit empties CSV files only")
            paths[kind] = _write(root / f"empty_{kind}_own", {kind: own})[kind]
        else:
            paths, _ = files_for(main, f"empty_{kind}", transform=header_only)
        try:
            result = fit(paths)
        except EmbstoreError:
            return
        except Exception as exc:
            raise _Failed(f"an empty {kind} input raised {_describe(exc)}; raise an embstore.errors.InputError "
                          "(or another EmbstoreError) that says what is missing") from None
        raise _Failed(f"an empty {kind} input (header only) returned {type(result).__name__} "
                      "instead of raising an InputError")

    for kind in main:
        r.run(f"fit: empty {kind} raises an EmbstoreError", lambda kind=kind: empty(kind), needs=needs)

    def one_row() -> None:
        if inputs is not None and any(v is not None for v in inputs.values()):
            raise _Skip("inputs are the caller's; the one-row case uses generated inputs")
        paths, _ = files_for(main, "one_row", transform=_tiny)
        try:
            result = fit(paths)
        except EmbstoreError:
            return
        except Exception as exc:
            raise _Failed(f"one-row inputs raised {_describe(exc)}; return vectors or raise an "
                          "embstore.errors.InputError saying why there is too little data") from None
        _results(cls, result)

    if main:
        r.run("fit: one-row input gives vectors or an EmbstoreError", one_row, needs=needs)


# --------------------------------------------------------------------------- retrievers


def _metric_scores(metric: str, queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Exact scores of every stored row for each query: similarity (ip, cosine) or distance (l2)."""
    q, x = queries.astype(np.float64), stored.astype(np.float64)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if metric == "l2":
        sq = (q ** 2).sum(1)[:, None] + (x ** 2).sum(1)[None, :] - 2 * q @ x.T
        return np.sqrt(np.maximum(sq, 0))
    return q @ x.T


def _better_first(metric: str, scores: np.ndarray) -> bool:
    """Scores of one result row are ordered best first (small tolerance for float noise)."""
    s = scores.astype(np.float64)
    if s.size < 2:
        return True
    with np.errstate(invalid="ignore"):
        step = np.diff(s)
    tol = 1e-5 * max(1.0, float(np.max(np.abs(s[np.isfinite(s)]))) if np.isfinite(s).any() else 1.0)
    with np.errstate(invalid="ignore"):
        ok = step >= -tol if metric == "l2" else step <= tol
    # infinities on both sides give NaN steps: equal padding scores are in order
    both_inf = np.isinf(s[1:]) & np.isinf(s[:-1]) & (np.sign(s[1:]) == np.sign(s[:-1]))
    return bool((ok | both_inf).all())


def check_retriever(retriever: type[Retriever], config: Mapping[str, Any] | None = None, *,
                    n: int = 120, dim: int = 16, seed: int = 0,
                    workdir: str | Path | None = None) -> ConformanceReport:
    """Run a Retriever class through the whole contract; raise ConformanceError listing every failure.

    retriever: the Retriever subclass (not an instance).
    config:    config values over ``conformance_config`` and the defaults; ``metric`` is set by the
               kit to each metric the Config allows (ip, cosine, l2).
    n, dim:    size of the generated unit-length vectors (``make_vectors``).
    workdir:   where save/load writes (a temporary directory by default).

    Approximate indexes are held to near-exact answers on this small data: the
    top-1 of a stored vector must be itself and recall@10 against exact search at least 0.9.
    """
    cls = retriever
    r = _Runner(f"retriever {getattr(cls, 'name', '?')!r} ({getattr(cls, '__module__', '?')}."
                f"{getattr(cls, '__qualname__', cls)!s})")
    if not (isinstance(cls, type) and issubclass(cls, Retriever)):
        r.run("class: is a Retriever subclass", _failing(f"{cls!r} is not a Retriever subclass (pass the class itself)"))
        return r.finish()
    r.run("class: is a Retriever subclass", lambda: None)
    name = getattr(cls, "name", None)
    r.run("class: name", (lambda: None) if _name_ok(name) else _failing(
        f"name must be a string of letters, digits, '_' or '-', e.g. 'faiss'; got {name!r}"))
    _check_config_class(r, cls, RetrieverConfig, "retriever")
    values = r.run("config: conformance_config is a dict", lambda: _merged_config(cls, config))
    if values is not None:
        _check_config_values(r, cls, values, "retriever")
    needs = ["class: name", "config: the test config parses"]

    def metrics() -> list[str]:
        allowed = []
        for metric in METRICS:
            try:
                parse_config(cls.Config, {**values, "metric": metric}, f"retriever {cls.name!r}")
                allowed.append(metric)
            except ConfigError:
                continue
        if not allowed:
            raise _Failed("the Config accepts none of the metrics ip, cosine, l2")
        return allowed

    allowed = r.run("config: supports at least one metric", metrics, needs=needs) or []
    vectors = make_vectors(n, dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    queries = np.concatenate([vectors[:10], make_vectors(5, dim, seed=seed + 2)])
    k = 10

    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="embstore-conformance-")))
        root.mkdir(parents=True, exist_ok=True)
        for metric in METRICS:
            if metric not in allowed:
                r.report.skipped.append((f"search ({metric})", "the Config does not allow this metric"))
                continue
            cfg = parse_config(cls.Config, {**values, "metric": metric}, f"retriever {cls.name!r}")
            _retriever_metric(r, cls, cfg, metric, vectors, queries, k, root / metric)
        if allowed:
            cfg = parse_config(cls.Config, {**values, "metric": allowed[0]}, f"retriever {cls.name!r}")
            _retriever_edges(r, cls, cfg, allowed[0], vectors, rng)
    return r.finish()


def _retriever_metric(r: _Runner, cls: type[Retriever], cfg: Any, metric: str, vectors: np.ndarray,
                      queries: np.ndarray, k: int, directory: Path) -> None:
    state: dict = {}
    n = vectors.shape[0]
    build_name = f"build ({metric})"

    def build() -> None:
        index = cls(cfg)
        before_v, before_q = vectors.copy(), queries.copy()
        index.build(vectors)
        rows, scores = index.search(queries, k)
        if not (np.array_equal(vectors, before_v) and np.array_equal(queries, before_q)):
            raise _Failed("build or search modified the caller's array (normalise a copy)")
        state.update(index=index, rows=rows, scores=scores)

    r.run(build_name, build, needs=["config: supports at least one metric"])

    def shapes() -> None:
        rows, scores = np.asarray(state["rows"]), np.asarray(state["scores"])
        q = queries.shape[0]
        if rows.shape != (q, k) or scores.shape != (q, k):
            raise _Failed(f"search({q} queries, k={k}) must return two ({q}, {k}) arrays, "
                          f"got rows {rows.shape} and scores {scores.shape}")
        if rows.dtype.kind not in "iu":
            raise _Failed(f"rows must be integers, got dtype {rows.dtype}")
        if scores.dtype.kind != "f":
            raise _Failed(f"scores must be floats, got dtype {scores.dtype}")
        if ((rows < -1) | (rows >= n)).any():
            raise _Failed(f"rows must be in [0, {n}) or -1 for an empty slot, found {rows[(rows < -1) | (rows >= n)][:3]}")
        for i, row in enumerate(rows):
            real = row[row >= 0]
            if len(np.unique(real)) != len(real):
                raise _Failed(f"query {i} lists a row twice: {row.tolist()}")
            if (row[: len(real)] < 0).any():
                raise _Failed(f"query {i}: empty slots (-1) must come after every hit, got {row.tolist()}")
        if np.isnan(scores).any():
            raise _Failed("scores contain NaN")

    r.run(f"search: shapes and dtypes ({metric})", shapes, needs=[build_name])

    def ordered() -> None:
        for i, s in enumerate(np.asarray(state["scores"])):
            if not _better_first(metric, s):
                better = "lower distances" if metric == "l2" else "higher scores"
                raise _Failed(f"query {i}: results are not best first ({better} first): {np.round(s, 4).tolist()}")

    r.run(f"search: best first ({metric})", ordered, needs=[f"search: shapes and dtypes ({metric})"])

    def scores_match() -> None:
        rows, scores = np.asarray(state["rows"]), np.asarray(state["scores"], dtype=np.float64)
        exact = _metric_scores(metric, queries, vectors)
        hit = rows >= 0
        want = np.take_along_axis(exact, np.where(hit, rows, 0), axis=1)
        bad = hit & ~np.isclose(scores, want, rtol=1e-3, atol=1e-3)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            what = {"ip": "the inner product", "cosine": "the cosine similarity",
                    "l2": "the Euclidean distance (not squared)"}[metric]
            raise _Failed(f"query {i}, row {rows[i, j]}: score {scores[i, j]:.5f}, expected {what} "
                          f"{want[i, j]:.5f}")

    r.run(f"search: scores follow the metric ({metric})", scores_match,
          needs=[f"search: shapes and dtypes ({metric})"])

    def top1() -> None:
        rows = np.asarray(state["rows"])
        wrong = [i for i in range(10) if rows[i, 0] != i]
        if wrong:
            i = wrong[0]
            raise _Failed(f"a query equal to stored row {i} found row {rows[i, 0]} first "
                          f"({len(wrong)} of 10 stored vectors are not their own top-1)")

    r.run(f"search: a stored vector is its own top-1 ({metric})", top1,
          needs=[f"search: shapes and dtypes ({metric})"])

    def recall() -> None:
        rows = np.asarray(state["rows"])
        exact = _metric_scores(metric, queries, vectors)
        order = np.argsort(exact, axis=1) if metric == "l2" else np.argsort(-exact, axis=1)
        truth = order[:, :k]
        found = np.mean([len(set(rows[i].tolist()) & set(truth[i].tolist())) / k for i in range(len(rows))])
        if found < 0.9:
            raise _Failed(f"recall@{k} against exact search is {found:.2f} on {n} vectors; expected >= 0.9")

    r.run(f"search: recall@10 against exact search ({metric})", recall,
          needs=[f"search: shapes and dtypes ({metric})"])

    def save_load() -> None:
        directory.mkdir(parents=True, exist_ok=True)
        written = state["index"].save(directory)
        if not isinstance(written, (list, tuple)) or not written:
            raise _Failed(f"save must return the list of files it wrote (they get checksums), got {written!r}")
        for path in written:
            path = Path(path)
            if not path.is_file():
                raise _Failed(f"save listed {path}, which is not a file")
            try:
                path.resolve().relative_to(directory.resolve())
            except ValueError:
                raise _Failed(f"save wrote {path} outside the directory it was given ({directory})") from None
        loaded = cls.load(directory, cfg)
        if not isinstance(loaded, cls):
            raise _Failed(f"load must return a {cls.__name__}, got {type(loaded).__name__}")
        rows, scores = loaded.search(queries, k)
        if not np.array_equal(np.asarray(rows), np.asarray(state["rows"])):
            raise _Failed("after save and load, search returns different rows")
        if not np.allclose(np.asarray(scores), np.asarray(state["scores"]), rtol=1e-5, atol=1e-6, equal_nan=True):
            raise _Failed("after save and load, search returns different scores")

    r.run(f"save/load: same results after a round trip ({metric})", save_load,
          needs=[f"search: shapes and dtypes ({metric})"])


def _retriever_edges(r: _Runner, cls: type[Retriever], cfg: Any, metric: str, vectors: np.ndarray,
                     rng: np.random.Generator) -> None:
    needs = [f"search: shapes and dtypes ({metric})"]

    def padding() -> None:
        few = vectors[:5]
        index = cls(cfg)
        index.build(few)
        rows, scores = (np.asarray(a) for a in index.search(few[:2], 8))
        if rows.shape != (2, 8) or scores.shape != (2, 8):
            raise _Failed(f"search(k=8) over 5 vectors must return (2, 8) arrays, got {rows.shape}, {scores.shape}")
        for i in range(2):
            if sorted(rows[i, :5].tolist()) != [0, 1, 2, 3, 4] or (rows[i, 5:] != -1).any():
                raise _Failed(f"k=8 over 5 vectors: expected the 5 rows then -1 -1 -1, got {rows[i].tolist()}")
            if np.isnan(scores[i]).any() or not _better_first(metric, scores[i]):
                raise _Failed(f"padding scores must not be NaN nor outrank a hit: {scores[i].tolist()}")

    r.run("search: k larger than the index pads with -1", padding, needs=needs)

    def mismatch() -> None:
        index = cls(cfg)
        index.build(vectors)
        wrong = rng.normal(size=(2, vectors.shape[1] + 1)).astype(np.float32)
        try:
            index.search(wrong, 3)
        except (ValueError, EmbstoreError):
            return
        except Exception as exc:
            raise _Failed(f"queries of the wrong dimension raised {_describe(exc)}; raise a ValueError "
                          "or EmbstoreError naming both dimensions") from None
        raise _Failed(f"queries of dimension {vectors.shape[1] + 1} against an index of dimension "
                      f"{vectors.shape[1]} did not raise")

    r.run("search: dimension mismatch raises", mismatch, needs=needs)
