"""Plugin scaffolding: write an installable plugin package a team can start from (``embstore plugin new``).

    embstore plugin new covisit                       # ./embstore-covisit, a producer
    embstore plugin new exact --kind retriever --dir plugins/

The package has a pyproject.toml with the ``embstore`` entry point, the plugin
module (a working producer or retriever to replace), tests that run the
conformance kit (``embstore.testing``) and a README. From Python::

    from embstore.ops.scaffold import scaffold
    scaffold("covisit", kind="producer", parent="work")   # -> Path("work/embstore-covisit")

Templates live in ``embstore/scaffold-templates/`` (``string.Template``, ``$name``).
"""

from __future__ import annotations

import re
from pathlib import Path

from embstore.errors import PluginError

KINDS = ("producer", "retriever")
# Not an importable name on purpose: setuptools would warn about a data-only "package".
TEMPLATES = "scaffold-templates"
_NAME = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")

_SUMMARY = {
    "producer": "A producer that turns user histories into item vectors by windowed co-occurrence "
                "and a random projection: a working start to replace with your method.",
    "retriever": "A retriever doing exact numpy search (ip, cosine, l2): a working start to replace "
                 "with your index.",
}
_USAGE = {
    "producer": """```sh
embstore init
embstore run {name} --set my_items --input interactions=events.csv --config dim=64
embstore recall my_items --id SOME_ITEM_ID -k 10
```""",
    "retriever": """```sh
embstore init
embstore run item2vec --set my_items --input interactions=events.csv --retriever {name}
embstore recall my_items --id SOME_ITEM_ID -k 10
```

Or make it the store's default retriever with `retriever: {name}` in `HOME/embstore.yaml`.""",
}
_DEPENDENCIES = {"producer": ("numpy", "scipy"), "retriever": ("numpy",)}


def names_for(name: str, kind: str = "producer") -> dict[str, str]:
    """Every name the package uses: plugin, distribution, module, class."""
    if not _NAME.match(name or ""):
        raise PluginError(
            f"plugin name {name!r} is not usable: use lowercase letters and digits, words joined "
            "by '_' or '-', starting with a letter (e.g. covisit, my_item2vec)"
        )
    if kind not in KINDS:
        raise PluginError(f"plugin kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    words = re.split(r"[_-]", name)
    return {
        "name": name,
        "dist": "embstore-" + name.replace("_", "-"),
        "module": "embstore_" + name.replace("-", "_"),
        "cls": "".join(w[:1].upper() + w[1:] for w in words) + kind.capitalize(),
        "kind": kind,
    }


def _taken(name: str, kind: str) -> bool:
    """Is a plugin of this kind and name already installed? (A clash would break every start.)"""
    from embstore.catalogue import catalogue

    try:
        installed = catalogue()
    except Exception:  # a broken environment is not this command's business
        return False
    return name in (installed.producers if kind == "producer" else installed.retrievers)


def _render(template: str, values: dict[str, str]) -> str:
    from importlib.resources import files
    from string import Template

    text = (files("embstore") / TEMPLATES / template).read_text(encoding="utf-8")
    return Template(text).substitute(values)


def scaffold(name: str, kind: str = "producer", parent: str | Path = ".") -> Path:
    """Write the package for plugin ``name`` into ``parent/embstore-<name>`` and return that path.

    Raises PluginError for an unusable or already installed name, or when the
    target directory exists and is not empty (nothing is overwritten).
    """
    from importlib.metadata import PackageNotFoundError, version

    names = names_for(name, kind)
    if _taken(name, kind):
        raise PluginError(f"a {kind} named {name!r} is already installed; pick another name")
    target = Path(parent) / names["dist"]
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PluginError(f"{target} already exists and is not empty; choose another --dir or remove it")
    try:
        major, minor = version("embstore").split(".")[:2]
        requirement = f"embstore>={major}.{minor}"
    except (PackageNotFoundError, ValueError):
        requirement = "embstore"
    deps = [requirement, *_DEPENDENCIES[kind]]
    values = {
        **names,
        "description": f"embstore {kind} plugin {name}",
        "dependencies": ", ".join(f'"{d}"' for d in deps),
        "summary": _SUMMARY[kind],
        "usage": _USAGE[kind].format(name=name),
        "kind_option": "" if kind == "producer" else f" --kind {kind}",
        "retriever_checks": ", save/load round trip, k beyond the index size" if kind == "retriever" else "",
    }
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        ".gitignore": "gitignore.tmpl",
        f"src/{names['module']}/__init__.py": f"{kind}.py.tmpl",
        "tests/test_plugin.py": f"{kind}_test.py.tmpl",
    }
    rendered = {path: _render(template, values) for path, template in files.items()}  # all or nothing
    for path, text in rendered.items():
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return target
