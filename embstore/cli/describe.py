"""The describe command: a plugin's options as ``--help`` shows a command's.

``embstore describe item2vec`` lists the producer's ``--config`` keys with their
types, constraints, defaults and descriptions, read from the pydantic fields of
its ``Config``; retrievers (``--retriever-config``) and evaluators
(``--evaluate NAME:KEY=VALUE,...``) work the same way. ``--json`` gives the
same facts for tools.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from typing import Any

import click

from embstore.cli.state import State
from embstore.errors import PluginError

KINDS = ("producer", "retriever", "evaluator", "engine")
_TYPE_NAMES = {int: "INTEGER", float: "FLOAT", bool: "BOOLEAN", str: "TEXT", bytes: "BYTES"}
_CONSTRAINTS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("multiple_of", "multiple of "),
                ("min_length", "length >= "), ("max_length", "length <= "))


# -- what a plugin offers, as data ----------------------------------------------------------


def _tables(catalogue) -> dict[str, dict[str, type]]:
    return {"producer": catalogue.producers, "retriever": catalogue.retrievers, "evaluator": catalogue.evaluators,
            "engine": catalogue.engines}


def describe_plugins(catalogue, name: str, kind: str | None = None) -> list[dict]:
    """Every producer, retriever or evaluator called ``name`` (of ``kind`` if given), described."""
    tables = _tables(catalogue)
    found = [(k, tables[k][name]) for k in (KINDS if kind is None else (kind,)) if name in tables[k]]
    if not found:
        known = "; ".join(f"{k}s: {', '.join(sorted(tables[k])) or 'none'}" for k in (KINDS if kind is None else (kind,)))
        what = kind or "producer, retriever, evaluator or engine"
        raise PluginError(f"no {what} named {name!r} ({known})")
    return [describe_class(catalogue, k, cls) for k, cls in found]


def describe_class(catalogue, kind: str, cls: type) -> dict:
    owner = catalogue.owner(kind, cls.name)
    config = getattr(cls, "Config", None)
    out: dict[str, Any] = {
        "name": cls.name,
        "kind": kind,
        "plugin": owner.name,
        "plugin_version": owner.version,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "doc": inspect.getdoc(cls) or "",
        "config_class": f"{config.__module__}.{config.__qualname__}" if config is not None else None,
        "config_doc": _own_doc(config),
        "usage": usage(kind, cls.name),
    }
    if kind == "producer":
        out.update(requires=sorted(cls.requires), accepts=sorted(cls.accepts), entity=cls.entity,
                   entities=dict(cls.entities) if cls.entities else None, infer=bool(cls.can_infer()),
                   retriever_defaults=dict(cls.retriever_defaults))
    out["options"] = options(config) if config is not None else []
    return out


def usage(kind: str, name: str) -> str:
    if kind == "producer":
        return f"embstore run {name} --set SET --input KIND=PATH ... [--config KEY=VALUE ...]"
    if kind == "retriever":
        return f"embstore run PRODUCER ... --retriever {name} [--retriever-config KEY=VALUE ...]"
    if kind == "engine":
        return f"embstore init --engine {name} ... (engine_config: in HOME/embstore.yaml), or run --engine {name}"
    return f"embstore evaluate REF --evaluate {name}[:KEY=VALUE,...]"


def _own_doc(config) -> str:
    """The config class's docstring, unless it only inherits a base's."""
    if config is None or not config.__dict__.get("__doc__"):
        return ""
    from embstore.config import PluginConfig

    doc = inspect.getdoc(config) or ""
    return "" if doc == inspect.getdoc(PluginConfig) else doc


def options(config) -> list[dict]:
    """One entry per pydantic field of ``config``, in declaration order."""
    try:
        schema = config.model_json_schema().get("properties", {})
    except Exception:  # a field type without a JSON schema: the other facts still stand
        schema = {}
    out = []
    for name, info in config.model_fields.items():
        required = info.is_required()
        default = None
        if not required:
            default = info.default_factory() if info.default_factory is not None else info.default
        out.append({
            "name": name,
            "type": type_text(info.annotation),
            "constraints": constraints(info.metadata) + _nested_constraints(info.annotation),
            "required": required,
            "default": _jsonable(default),
            "description": info.description or "",
            "schema": schema.get(name),
        })
    return out


def type_text(annotation: Any) -> str:
    """A type as a --help metavar: INTEGER, FLOAT, [uniform|degree], INTEGER|all, FLOAT|null."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if _is_union(annotation):
        members = [a for a in args if a is not type(None)]
        literal_only = all(typing.get_origin(a) is typing.Literal for a in members)
        text = "|".join(type_text(a).strip("[]") if typing.get_origin(a) is typing.Literal else type_text(a)
                        for a in members)
        text = f"[{text}]" if literal_only else text
        return text + ("|null" if type(None) in args else "")
    if origin is typing.Literal:
        return "[" + "|".join(str(_jsonable(a)).lower() if isinstance(a, bool) else str(a) for a in args) + "]"
    if origin in (list, tuple, set, frozenset):
        return f"LIST OF {type_text(args[0])}" if args else "LIST"
    if origin is dict:
        return "MAPPING"
    if annotation in _TYPE_NAMES:
        return _TYPE_NAMES[annotation]
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "ANY"
    name = getattr(annotation, "__name__", None) or str(annotation)
    return "PATH" if name.endswith("Path") else name.upper()


def _is_union(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is typing.Union or origin is getattr(types, "UnionType", None)


def constraints(metadata: list) -> list[str]:
    out = []
    for item in metadata or ():
        for attr, sign in _CONSTRAINTS:
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign}{value}")
        if getattr(item, "allow_inf_nan", None) is False:
            out.append("finite")
    return out


def _nested_constraints(annotation: Any) -> list[str]:
    """Constraints declared inside a union member, e.g. ``Annotated[int, Field(ge=1)] | Literal["all"]``."""
    out = []
    if _is_union(annotation):
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is typing.Annotated:
                base, *extra = typing.get_args(arg)
                found = []
                for e in extra:
                    found += constraints(getattr(e, "metadata", None) or [e])
                out += [f"{type_text(base)} {c}" for c in found]
    return out


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def default_text(value: Any) -> str:
    """A default as it would be typed in --config KEY=VALUE (YAML): null, true, 0.75, uniform."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, (dict, list)):
        return json.dumps(value) if value else ("{}" if isinstance(value, dict) else "[]")
    return str(value)


# -- the command ------------------------------------------------------------------------------


@click.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), help="only a plugin of this kind (when a name is used by several)")
@click.option("--json", "as_json", is_flag=True, help="print the description as JSON (a list, one entry per match)")
@click.pass_obj
def describe(state: State, name: str, kind: str | None, as_json: bool) -> None:
    """Show a producer's, retriever's, evaluator's or engine's options: types, constraints, defaults
    and descriptions, e.g. ``embstore describe item2vec``, ``embstore describe faiss`` or ``spark``."""
    found = describe_plugins(state.catalogue(), name, kind)
    if as_json:
        click.echo(json.dumps(found))
        return
    click.echo("\n\n".join(render(d) for d in found))


def render(d: dict) -> str:
    f = click.HelpFormatter()
    f.write_usage(d["usage"].split(" ", 1)[0], d["usage"].split(" ", 1)[1], prefix="Usage: ")
    f.write_paragraph()
    with f.indentation():
        f.write_text(f"{d['kind']} {d['name']} from plugin {d['plugin']} {d['plugin_version']} ({d['class']})")
    for paragraph in d["doc"].split("\n\n") if d["doc"] else ():
        f.write_paragraph()
        with f.indentation():
            f.write_text(paragraph)
    if d["kind"] == "producer":
        rows = [("requires", ", ".join(d["requires"]) or "-")]
        if d["accepts"]:
            rows.append(("accepts", ", ".join(d["accepts"])))
        rows.append(("entity", ", ".join(f"{r}: {e}" for r, e in d["entities"].items()) if d["entities"] else d["entity"]))
        rows.append(("infer", "yes: embstore infer embeds unseen entities" if d["infer"] else "no"))
        if d["retriever_defaults"]:
            rows.append(("index", "defaults " + ", ".join(f"{k}={default_text(v)}" for k, v in d["retriever_defaults"].items())))
        with f.section("Inputs"):
            f.write_dl(rows)
    flag = {"producer": "--config KEY=VALUE", "retriever": "--retriever-config KEY=VALUE",
            "evaluator": f"--evaluate {d['name']}:KEY=VALUE,...", "engine": "engine_config: in HOME/embstore.yaml"}[d["kind"]]
    rows = []
    for o in d["options"]:
        facts = ["required"] if o["required"] else [f"default: {default_text(o['default'])}"]
        facts += o["constraints"]
        rows.append((f"{o['name']}={o['type']}", (o["description"] + "  " if o["description"] else "")
                     + "[" + "; ".join(facts) + "]"))
    with f.section(f"Options ({flag})"):
        if rows:
            f.write_dl(rows, col_max=34)
        else:
            f.write_text("none")
    if d["config_doc"]:
        with f.section(f"About the options ({d['config_class'].rsplit('.', 1)[1]})"):
            for i, paragraph in enumerate(d["config_doc"].split("\n\n")):
                if i:
                    f.write_paragraph()
                if paragraph.startswith("    ") or "\n    " in paragraph:  # a table or example: as written
                    f.write("".join(" " * f.current_indent + line + "\n" for line in paragraph.splitlines()))
                else:
                    f.write_text(paragraph)
    return f.getvalue().rstrip("\n")
