"""Pipeline files: the sets a materialization job builds, in one YAML file, validated before anything runs.

    embstore pipeline nightly.yaml            # validate everything, then build set after set
    embstore pipeline nightly.yaml --check    # validate only

    sets:
      - set: movies_item2vec
        producer: item2vec
        inputs: {interactions: data/train.csv}          # relative to this file
        columns: {interactions: {user_id: userId, item_id: movieId}}
        config: {dim: 64, epochs: 10}
        retriever_config: {metric: cosine}
        align_to: prod                                  # rotate onto what prod serves
        evaluate:
          hit_rate: {path: data/ratings.csv, k: 10, min_rating: 3.5}
          drift: {alias: prod}
        gates: ["hr@10>=0.05", "drift_overlap@10>=0.2"]
        promote: prod                                   # only if every gate passes
      - set: movies_both
        compose: [movies_item2vec@prod, movies_deepwalk@prod]
        weights: [1.0, 0.5]
        promote: prod

Keys of a step: ``set``; either ``producer`` (with ``inputs``, ``columns``,
``config``, ``entity``, ``until``, ``valid_from``) or ``compose`` (with
``weights``, ``normalize``); and ``retriever``, ``retriever_config``,
``align_to``, ``evaluate``, ``gates``, ``promote`` as on ``embstore run``.
Unknown keys, producers, evaluators, config keys, missing input files,
missing evaluator files, compose sources that neither exist nor are built by
an earlier step, and malformed gates are reported before anything is trained. Steps run in order; the first failure (a failed gate
included) stops the pipeline with exit status 1 unless ``--keep-going``.
Relative paths (inputs, and evaluator config fields that are paths) are
relative to the pipeline file.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pydantic

from embstore.errors import ConfigError, EmbstoreError, InputError, PluginError, first_line

if TYPE_CHECKING:
    from embstore.catalogue import PluginCatalogue
    from embstore.refs import VersionInfo
    from embstore.store import EmbeddingStore
    from embstore.versions.gates import Checks


class StepSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    set: str
    producer: str | None = None
    inputs: dict[str, str] = pydantic.Field(default_factory=dict)
    columns: dict[str, dict[str, str]] = pydantic.Field(default_factory=dict)
    config: dict[str, Any] = pydantic.Field(default_factory=dict)
    entity: str | None = None
    compose: list[str] | None = None
    weights: list[float] | None = None
    normalize: bool = False
    retriever: str | None = None
    retriever_config: dict[str, Any] = pydantic.Field(default_factory=dict)
    align_to: str | None = None
    evaluate: dict[str, dict[str, Any] | None] = pydantic.Field(default_factory=dict)
    gates: list[str] = pydantic.Field(default_factory=list)
    promote: str | None = None
    until: str | int | None = None
    valid_from: str | int | None = None

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> "StepSpec":
        if (self.producer is None) == (self.compose is None):
            raise ValueError("give exactly one of 'producer' (train) or 'compose' (concatenate sets)")
        if self.compose is not None and (self.inputs or self.columns or self.config or self.entity):
            raise ValueError("a 'compose' step takes no inputs, columns, config or entity")
        if self.producer is not None and (self.weights is not None or self.normalize):
            raise ValueError("'weights' and 'normalize' belong to 'compose' steps")
        return self


class PipelineSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    sets: list[StepSpec] = pydantic.Field(min_length=1)


@dataclass
class Step:
    """One validated step, ready to run."""

    spec: StepSpec
    checks: "Checks"
    inputs: Any = None  # embstore.inputs.Inputs for producer steps

    def run(self, store: "EmbeddingStore") -> "VersionInfo | list[VersionInfo]":
        s = self.spec
        if s.compose is not None:
            return store.compose(s.set, s.compose, s.weights, normalize=s.normalize, promote=s.promote,
                                 retriever=s.retriever, retriever_config=s.retriever_config, align_to=s.align_to,
                                 evaluate=self.checks)
        return store.run(s.producer, s.set, self.inputs, s.config, promote=s.promote, entity=s.entity,
                         retriever=s.retriever, retriever_config=s.retriever_config, align_to=s.align_to,
                         evaluate=self.checks, until=s.until, valid_from=s.valid_from)


def _is_path_field(annotation: Any) -> bool:
    if annotation is Path:
        return True
    return any(a is Path for a in typing.get_args(annotation))


def _relative_to(base: Path, config_cls: type, values: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """Config values with relative path fields resolved against the pipeline file's directory; a
    path that does not exist is a ConfigError now, not after training."""
    out = dict(values or {})
    for key, field in getattr(config_cls, "model_fields", {}).items():
        if key in out and isinstance(out[key], str) and _is_path_field(field.annotation):
            path = Path(out[key]).expanduser()
            out[key] = str(path if path.is_absolute() else base / path)
            if not Path(out[key]).exists():
                raise ConfigError(f"{what} {key} {out[key]} does not exist")
    return out


def load_pipeline(path: str | Path, catalogue: "PluginCatalogue",
                  resolve: Callable[[str], Any] | None = None) -> list[Step]:
    """Read and validate a pipeline file completely against the plugins in ``catalogue``;
    nothing is trained or stored. With ``resolve`` (a store's ``resolve``), each compose source
    must name a version that exists, or a set an earlier step builds."""
    import yaml

    from embstore.config import parse_config
    from embstore.inputs import Inputs, InputSpec
    from embstore.refs import Ref, check_alias_name, check_set_name
    from embstore.versions.gates import Checks

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"pipeline file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline file {path} is not valid YAML: {first_line(exc)}") from None
    try:
        spec = PipelineSpec.model_validate(raw if raw is not None else {})
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        extra = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{path}: {where}: {err['msg']}{extra}") from None
    base = path.resolve().parent
    steps = []
    built: set[str] = set()
    for n, s in enumerate(spec.sets, 1):
        where = f"{path}: step {n} ({s.set})"
        try:
            check_set_name(s.set)
            if s.promote:
                check_alias_name(s.promote)
            evaluate = {}
            for name, config in s.evaluate.items():
                evaluate[name] = _relative_to(base, catalogue.evaluator(name).Config, config, f"evaluator {name!r}")
            checks = Checks.prepare(evaluate, s.gates, catalogue, columns=s.columns)
            inputs = None
            if s.producer is not None:
                cls = catalogue.producer(s.producer)
                parse_config(cls.Config, s.config, f"producer {s.producer!r}")
                unknown = set(s.columns) - set(s.inputs)
                if unknown:
                    raise ConfigError(f"columns given for input(s) {sorted(unknown)} that are not in 'inputs'")
                specs = []
                for kind, file in s.inputs.items():
                    p = Path(file).expanduser()
                    specs.append(InputSpec(kind, p if p.is_absolute() else base / p, s.columns.get(kind, {})))
                inputs = Inputs(specs)
                inputs.require(cls.requires, s.producer)
                inputs.reject_unused(cls.requires | cls.accepts, s.producer)
            else:
                for ref in s.compose or ():
                    source = Ref.parse(ref)
                    if resolve is not None and source.set not in built:
                        try:
                            resolve(source)
                        except EmbstoreError as exc:
                            raise ConfigError(f"compose source {ref}: {first_line(exc)}, and no earlier step "
                                              f"builds set {source.set!r}") from None
            if s.retriever:
                catalogue.retriever(s.retriever)
        except (ConfigError, PluginError, InputError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        steps.append(Step(s, checks, inputs))
        built.add(s.set)
        if s.producer is not None and catalogue.producer(s.producer).entities:  # several sets, one per role
            built.update(f"{s.set}_{role}" for role in catalogue.producer(s.producer).entities)
    return steps


@dataclass
class Outcome:
    set: str
    ok: bool
    refs: list[str]
    error: str | None = None

    def as_dict(self) -> dict:
        return {"set": self.set, "ok": self.ok, "refs": self.refs, "error": self.error}


def run_pipeline(store: "EmbeddingStore", path: str | Path, *, keep_going: bool = False,
                 echo=None) -> list[Outcome]:
    """Validate the file, then run its steps in order; returns each step's outcome.

    Stops at the first failing step (later steps get no outcome) unless ``keep_going``."""
    steps = load_pipeline(path, store.catalogue, store.resolve)
    outcomes = []
    for step in steps:
        try:
            result = step.run(store)
        except EmbstoreError as exc:
            outcome = Outcome(step.spec.set, False, [], first_line(exc))
            gate_version = getattr(exc, "version", None)
            if gate_version is not None:
                outcome.refs = [gate_version.ref]
            outcomes.append(outcome)
            if echo:
                echo(outcome)
            if not keep_going:
                break
            continue
        versions = result if isinstance(result, list) else [result]
        outcome = Outcome(step.spec.set, True, [v.ref for v in versions])
        outcomes.append(outcome)
        if echo:
            echo(outcome)
    return outcomes
