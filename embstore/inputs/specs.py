"""What an input is: its kind, its file and its column mapping, as the CLI and the API name them.

    spec = parse_input_arg("interactions=ratings.csv")          # checked now: exists, readable type
    specs = specs_from_args(["edges=e.csv"], ["edges.src=from", "edges.dst=to"])

Each kind has canonical columns (``COLUMNS``); ``--column KIND.CANONICAL=ACTUAL``
maps one to the file's own name. ``table`` maps freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from embstore.errors import InputError

INPUT_KINDS = ("interactions", "edges", "side_info", "features", "table")

# kind -> (required canonical columns, optional canonical columns); ``table`` maps freely.
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "interactions": (("user_id", "item_id", "timestamp"), ("rating", "weight")),
    "edges": (("src", "dst"), ("weight",)),
    "side_info": (("item_id",), ()),
    "features": (("id",), ()),
    "table": ((), ()),
}
_CSV = (".csv", ".csv.gz")
_PARQUET = (".parquet", ".pq")
_NPZ = (".npz",)


def file_format(kind: str, path: Path) -> str:
    """'csv', 'parquet' or 'npz' from the file name; anything else is refused up front."""
    name = path.name.lower()
    if name.endswith(_CSV):
        return "csv"
    if name.endswith(_PARQUET):
        return "parquet"
    if name.endswith(_NPZ) and kind == "features":
        return "npz"
    allowed = _CSV + _PARQUET + (_NPZ if kind == "features" else ())
    raise InputError(
        f"{path}: cannot read a {kind!r} input from this file type; "
        f"use one of {', '.join(allowed)}"
    )


def check_exists(spec: InputSpec) -> None:
    """An InputError unless the spec's path is an existing file."""
    if not spec.path.exists():
        raise InputError(f"{spec.kind} input {spec.display}: file not found")
    if not spec.path.is_file():
        raise InputError(f"{spec.kind} input {spec.display}: not a file")


@dataclass(frozen=True)
class InputSpec:
    """One input file: its kind, path and a canonical -> actual column-name mapping.

    ``mapped_by`` says how the user maps a column of this file, in errors (``{kind}``,
    ``{canonical}`` and ``{actual}`` are filled in): a run's ``--column`` by default; an
    evaluator reading its own file says how its config maps one."""

    kind: str
    path: Path
    columns: Mapping[str, str] = field(default_factory=dict, hash=False)
    mapped_by: str = field(default="--column {kind}.{canonical}={actual}", hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise InputError(
                f"unknown input kind {self.kind!r}; known kinds: {', '.join(INPUT_KINDS)}"
            )
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "columns", dict(self.columns))
        if self.kind != "table":
            required, optional = COLUMNS[self.kind]
            for canonical in self.columns:
                if canonical not in required + optional:
                    raise InputError(
                        f"--column {self.kind}.{canonical}: {self.kind} has no column "
                        f"{canonical!r}; it maps: {', '.join(required + optional)}"
                    )

    @property
    def display(self) -> str:
        return str(self.path)


def parse_input_arg(arg: str, files: bool = True) -> InputSpec:
    """``KIND=PATH`` from the CLI, checked now so a typo fails before any training. ``files=False``
    leaves PATH to the engine that reads it (a Spark dataset: a directory, a glob, a URL)."""
    kind, sep, path = arg.partition("=")
    if not sep or not kind or not path:
        raise InputError(
            f"--input {arg!r}: expected KIND=PATH with KIND one of {', '.join(INPUT_KINDS)}"
        )
    spec = InputSpec(kind.strip(), Path(path))
    if files:
        check_exists(spec)
        file_format(spec.kind, spec.path)
    return spec


def parse_column_arg(arg: str) -> tuple[str, str, str]:
    """``KIND.CANONICAL=ACTUAL`` from the CLI, e.g. ``interactions.user_id=userId``."""
    target, sep, actual = arg.partition("=")
    kind, dot, canonical = target.partition(".")
    if not sep or not dot or not kind or not canonical or not actual:
        raise InputError(
            f"--column {arg!r}: expected KIND.COLUMN=NAME, e.g. interactions.user_id=userId"
        )
    if kind not in INPUT_KINDS:
        raise InputError(
            f"--column {arg!r}: unknown input kind {kind!r}; known kinds: {', '.join(INPUT_KINDS)}"
        )
    return kind, canonical, actual


def specs_from_args(input_args: Iterable[str], column_args: Iterable[str] = (), files: bool = True) -> list[InputSpec]:
    """Combine ``--input`` and ``--column`` options into specs; a mapping needs its input."""
    specs = [parse_input_arg(a, files) for a in input_args]
    by_kind = {s.kind: s for s in specs}
    mappings: dict[str, dict[str, str]] = {}
    for arg in column_args:
        kind, canonical, actual = parse_column_arg(arg)
        if kind not in by_kind:
            raise InputError(
                f"--column {arg!r} maps a column of {kind!r}, but no --input {kind}=PATH was given"
            )
        mappings.setdefault(kind, {})[canonical] = actual
    return [InputSpec(s.kind, s.path, mappings.get(s.kind, {})) for s in specs]
