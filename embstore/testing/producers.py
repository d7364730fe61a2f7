"""The producer contract: ``ProducerSubject``, its ``check_*`` functions, and ``check_producer``.

The fits are the expensive part: the subject fits each scenario once, and every
check that needs a fit reads it from the subject (``subject.main_fit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from embstore.config import PluginConfig
from embstore.embeddings import Embeddings
from embstore.errors import EmbstoreError
from embstore.inputs import INPUT_KINDS, Inputs, InputSpec
from embstore.producer import Producer
from embstore.testing.common import PluginSubject, check_is_subclass, check_name, config_checks
from embstore.testing.data import make_frames, tiny_frames, write_frames
from embstore.testing.runner import BoundCheck, Check, ConformanceReport, Failed, Skip, check, describe
from embstore.testing.runner import finish, run_checks


@dataclass(frozen=True)
class Scenario:
    """The input kinds of one fit, and the directory its files go to; prints as ``a+b``."""

    kinds: tuple[str, ...]
    tag: str

    def __str__(self) -> str:
        return _label(self.kinds)


def _label(kinds: Iterable[str]) -> str:
    kinds = list(kinds)
    return "+".join(kinds) if kinds else "no inputs"


def _ordered(kinds: Iterable[str]) -> list[str]:
    """Known input kinds in the usual order, then any others."""
    kinds = set(kinds)
    return [k for k in INPUT_KINDS if k in kinds] + sorted(str(k) for k in kinds - set(INPUT_KINDS))


def _scenario_kinds(cls: type[Producer], inputs: Mapping[str, Any] | None) -> list[tuple[str, ...]]:
    """The input kinds of each fit scenario; the first is the main one."""
    if inputs is not None:  # the caller's kinds, plus generated ones for anything else required
        return [tuple(_ordered(set(cls.requires) | set(inputs)))]
    declared = getattr(cls, "conformance_inputs", None)
    if declared:
        return [tuple(s) for s in declared]
    requires = _ordered(cls.requires)
    accepts = [k for k in _ordered(cls.accepts) if k not in requires]
    if requires:
        return [tuple(requires)] + ([tuple(requires + accepts)] if accepts else [])
    if accepts:
        return [(k,) for k in accepts]
    return [()]


def _results(cls: type[Producer], result: Any) -> dict[str, Embeddings]:
    """role -> validated Embeddings (role '' for a single-entity producer), or Failed saying what is wrong."""
    if cls.entities:
        if not isinstance(result, Mapping) or set(result) != set(cls.entities):
            got = sorted(result) if isinstance(result, Mapping) else type(result).__name__
            raise Failed(f"fit must return {{role: Embeddings}} for roles {sorted(cls.entities)}, got {got}")
        items = list(result.items())
    else:
        if not isinstance(result, Embeddings):
            raise Failed(f"fit must return Embeddings, got {type(result).__name__}")
        items = [("", result)]
    out = {}
    for role, emb in items:
        where = f" for role {role!r}" if role else ""
        if not isinstance(emb, Embeddings):
            raise Failed(f"fit returned {type(emb).__name__}{where}, not Embeddings")
        try:
            out[role] = emb.validated()
        except EmbstoreError as exc:
            raise Failed(f"fit returned vectors{where} that cannot be published: {exc}") from None
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


Fit = tuple[dict[str, Embeddings], "dict | None"]  # role -> Embeddings, and the frames (None: caller's files)


class ProducerSubject(PluginSubject):
    """A Producer class under test: its config, input scenarios, files, and fits (each made once).

    inputs: None, or kind -> path, DataFrame or None (generate), as ``check_producer`` takes.
    seed:   seed of the generated data.
    """

    kind: ClassVar[str] = "producer"
    base: ClassVar[type] = Producer
    config_base: ClassVar[type[PluginConfig]] = PluginConfig
    example_name: ClassVar[str] = "item2vec"

    def __init__(self, cls: Any, inputs: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None, *, seed: int = 0,
                 workdir: str | Path | None = None) -> None:
        super().__init__(cls, config, workdir=workdir)
        self.inputs = inputs
        self.seed = seed

    @property
    def scenarios(self) -> list[Scenario]:
        """Every fit scenario, the main one first; raises when requires/accepts are unusable."""
        kinds = _scenario_kinds(self.cls, self.inputs)
        return [Scenario(kinds[0], "main")] + [Scenario(k, "with_" + "_".join(k)) for k in kinds[1:]]

    @property
    def own_inputs(self) -> bool:
        """Whether the caller gave any input of their own."""
        return self.inputs is not None and any(v is not None for v in self.inputs.values())

    @property
    def ready(self) -> Any:
        """The parsed config, once every check a fit depends on has passed."""
        for fn in (check_name, check_kinds, check_entity, check_instantiable):
            self.needs(fn)
        return self.config

    @property
    def main_fit(self) -> Fit:
        """The fit of the main scenario and the frames behind it."""
        return self.needs(check_fit, scenario=self.scenarios[0])

    def files(self, kinds: tuple[str, ...], tag: str, id_type: str = "str",
              transform: Callable[[dict], dict] | None = None) -> tuple[dict[str, Path], dict | None]:
        """kind -> path for a fit, and the frames behind them (None when a caller's file is used)."""
        given = dict(self.inputs or {})
        generate = [k for k in kinds if given.get(k) is None]
        unknown = [k for k in generate if k not in INPUT_KINDS]
        if unknown:
            raise Skip(f"the kit cannot generate input kind(s) {unknown}; pass inputs={{kind: path}}")
        frames = make_frames(generate, seed=self.seed, id_type=id_type) if generate else {}
        frames.update({k: given[k] for k in kinds if isinstance(given.get(k), pd.DataFrame)})
        if transform is not None:
            frames = transform(frames)
        paths = write_frames(self.root / tag, frames)
        own_files = {k: Path(v) for k, v in given.items()
                     if k in kinds and v is not None and not isinstance(v, pd.DataFrame)}
        paths.update(own_files)
        return paths, (None if own_files else frames)

    def fit(self, paths: Mapping[str, Path]) -> Any:
        """What ``cls().fit`` returns on these files, through Inputs as the store calls it."""
        cls = self.cls
        data = Inputs([InputSpec(kind, path) for kind, path in paths.items()])
        data.require(cls.requires, cls.name)
        data.reject_unused(cls.requires | cls.accepts, cls.name)
        return cls().fit(data, self.ready)

    def fit_valid(self, kinds: tuple[str, ...], tag: str, id_type: str = "str") -> Fit:
        """A fit that must succeed and give valid Embeddings."""
        paths, frames = self.files(kinds, tag, id_type)
        try:
            result = self.fit(paths)
        except EmbstoreError as exc:
            if self.inputs is not None:
                raise Failed(f"fit on the given {_label(kinds)} inputs raised {describe(exc)}") from None
            raise Failed(
                f"fit on the kit's generated {_label(kinds)} inputs raised {describe(exc)}. If the producer "
                "needs columns or data the kit does not generate, pass your own: check_producer(cls, "
                "inputs={'kind': path}) (see docs/plugins.md)"
            ) from None
        return _results(self.cls, result), frames


# --------------------------------------------------------------------------- the class


@check("class: requires and accepts are known input kinds")
def check_kinds(s: ProducerSubject) -> None:
    for attr in ("requires", "accepts"):
        value = getattr(s.cls, attr)
        if isinstance(value, str) or not isinstance(value, (set, frozenset)):
            raise Failed(f"{attr} must be a frozenset of input kinds, got {value!r}")
        unknown = sorted(set(value) - set(INPUT_KINDS))
        if unknown:
            raise Failed(f"{attr} names unknown input kind(s) {unknown}; known kinds: {', '.join(INPUT_KINDS)}")


@check("class: entity and entities")
def check_entity(s: ProducerSubject) -> None:
    cls = s.cls
    if not (isinstance(cls.entity, str) and cls.entity.isidentifier()):
        raise Failed(f"entity must be a join-key column name like 'item_id', got {cls.entity!r}")
    if cls.entities is None:
        return
    if not isinstance(cls.entities, Mapping) or not cls.entities:
        raise Failed(f"entities must be None or a non-empty {{role: join_key}} mapping, got {cls.entities!r}")
    bad = [f"{k!r}: {v!r}" for k, v in cls.entities.items()
           if not (isinstance(k, str) and k.isidentifier() and isinstance(v, str) and v.isidentifier())]
    if bad:
        raise Failed(f"entities roles and join keys must be identifiers, got {', '.join(bad)}")


@check("class: instantiable with no arguments")
def check_instantiable(s: ProducerSubject) -> None:
    try:
        s.cls()
    except TypeError as exc:
        raise Failed(f"{s.cls.__name__}() must work with no arguments (the store calls cls()): {exc}") from None


# --------------------------------------------------------------------------- the fits


@check("fit")
def check_scenarios_known(s: ProducerSubject) -> list[Scenario]:
    """Stands in for the fits when requires/accepts do not tell which inputs to generate."""
    try:
        return s.scenarios
    except Exception as exc:
        raise Skip(f"cannot tell which inputs to generate: {describe(exc)}") from None


@check("fit: {scenario} gives valid Embeddings")
def check_fit(s: ProducerSubject, scenario: Scenario) -> Fit:
    s.ready
    return s.fit_valid(scenario.kinds, scenario.tag)


@check("fit: ids come from the inputs")
def check_ids_from_inputs(s: ProducerSubject) -> None:
    results, frames = s.main_fit
    if frames is None:
        raise Skip("inputs are the caller's files; the kit does not know their ids")
    known = _input_ids(frames)
    for role, emb in results.items():
        strange = [i for i in emb.ids.tolist() if str(i) not in known]
        if strange:
            where = f" for role {role!r}" if role else ""
            raise Failed(f"{len(strange)} of {len(emb)} ids{where} are not in the inputs, e.g. "
                         f"{strange[:3]}; return ids as they appear in the input columns")


@check("fit: same seed gives identical vectors")
def check_same_seed(s: ProducerSubject) -> None:
    first, _ = s.main_fit
    if "seed" not in s.cls.Config.model_fields:
        raise Skip("the config has no 'seed' field; a producer with randomness should take one")
    paths, _ = s.files(s.scenarios[0].kinds, "main")
    again = _results(s.cls, s.fit(paths))
    seed = s.config.seed
    for role, emb in first.items():
        other = again[role]
        where = f" (role {role!r})" if role else ""
        if emb.ids.shape != other.ids.shape or not np.array_equal(emb.ids, other.ids):
            raise Failed(f"two fits with seed={seed} returned different ids or id order{where}")
        if not np.array_equal(emb.vectors, other.vectors):
            diff = float(np.max(np.abs(emb.vectors - other.vectors)))
            raise Failed(f"two fits with seed={seed} returned different vectors{where} "
                         f"(largest difference {diff:.3g}); seed every random source, single-threaded "
                         "by default, or document where the library does not allow it")


@check("fit: integer ids")
def check_integer_ids(s: ProducerSubject) -> None:
    s.main_fit
    if s.own_inputs:
        raise Skip("inputs are the caller's; integer ids are tried only on generated inputs")
    results, frames = s.fit_valid(s.scenarios[0].kinds, "int_ids", id_type="int")
    known = _input_ids(frames or {})
    for role, emb in results.items():
        if emb.ids.dtype.kind != "i":
            raise Failed(f"integer input ids came back as {emb.ids.dtype} ({emb.ids[:3].tolist()}); "
                         "keep the ids the inputs give (Inputs parses them as int64)")
        strange = [i for i in emb.ids.tolist() if str(i) not in known]
        if strange:
            raise Failed(f"ids not in the inputs, e.g. {strange[:3]}")


def _empty_input_paths(s: ProducerSubject, kind: str) -> dict[str, Path]:
    """The main scenario's files with ``kind`` reduced to its header line."""
    main = s.scenarios[0].kinds
    given = (s.inputs or {}).get(kind)
    if s.inputs is None or isinstance(given, (pd.DataFrame, type(None))):
        def header_only(frames: dict) -> dict:
            return {k: (f.iloc[:0] if k == kind else f) for k, f in frames.items()}

        return s.files(main, f"empty_{kind}", transform=header_only)[0]
    paths, _ = s.files(main, f"empty_{kind}")
    if not str(paths[kind]).endswith((".csv", ".csv.gz")):
        raise Skip(f"your {kind} input is not CSV; the kit empties CSV files only")
    header = pd.read_csv(paths[kind], nrows=0)
    paths[kind] = write_frames(s.root / f"empty_{kind}_own", {kind: header})[kind]
    return paths


@check("fit: empty {kind} raises an EmbstoreError")
def check_empty_input(s: ProducerSubject, kind: str) -> None:
    s.ready
    paths = _empty_input_paths(s, kind)
    try:
        result = s.fit(paths)
    except EmbstoreError:
        return
    except Exception as exc:
        raise Failed(f"an empty {kind} input raised {describe(exc)}; raise an embstore.errors.InputError "
                     "(or another EmbstoreError) that says what is missing") from None
    raise Failed(f"an empty {kind} input (header only) returned {type(result).__name__} "
                 "instead of raising an InputError")


@check("fit: one-row input gives vectors or an EmbstoreError")
def check_one_row(s: ProducerSubject) -> None:
    s.ready
    if s.own_inputs:
        raise Skip("inputs are the caller's; the one-row case uses generated inputs")
    paths, _ = s.files(s.scenarios[0].kinds, "one_row", transform=tiny_frames)
    try:
        result = s.fit(paths)
    except EmbstoreError:
        return
    except Exception as exc:
        raise Failed(f"one-row inputs raised {describe(exc)}; return vectors or raise an "
                     "embstore.errors.InputError saying why there is too little data") from None
    _results(s.cls, result)


# --------------------------------------------------------------------------- the whole contract


def producer_suite(s: ProducerSubject) -> Iterator[Check]:
    """Every check of the producer contract for this subject, in report order."""
    yield s.bind(check_is_subclass)
    if not s.is_subclass:
        return
    for fn in (check_name, check_kinds, check_entity, check_instantiable):
        yield s.bind(fn)
    yield from config_checks(s)
    try:
        main, *extras = s.scenarios
    except Exception:  # a broken requires/accepts is already a failed check
        yield s.bind(check_scenarios_known)
        return
    yield s.bind(check_fit, scenario=main)
    for fn in (check_ids_from_inputs, check_same_seed, check_integer_ids):
        yield s.bind(fn)
    for extra in extras:
        yield s.bind(check_fit, scenario=extra)
    for kind in main.kinds:
        yield s.bind(check_empty_input, kind=kind)
    if main.kinds:
        yield s.bind(check_one_row)


def producer_checks(producer: type[Producer], inputs: Mapping[str, Any] | None = None,
                    config: Mapping[str, Any] | None = None, *, seed: int = 0,
                    workdir: str | Path | None = None) -> Iterator[tuple[str, BoundCheck]]:
    """(test id, check) for each check of ``producer``; calling a check runs it (see BoundCheck).

    The checks share one subject, so the fits are made once between them. Arguments as
    for ``check_producer``; the temporary directory goes when the checks are garbage collected.
    """
    subject = ProducerSubject(producer, inputs, config, seed=seed, workdir=workdir)
    for chk in producer_suite(subject):
        bound = BoundCheck(subject, chk)
        yield bound.id, bound


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
    subject = ProducerSubject(producer, inputs, config, seed=seed, workdir=workdir)
    with subject:
        return finish(run_checks(subject, producer_suite(subject)))
