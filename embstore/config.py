"""Typed plugin configs: validated at the edge, unknown keys are errors."""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

import pydantic

from embstore.errors import ConfigError

C = TypeVar("C", bound="PluginConfig")


class PluginConfig(pydantic.BaseModel):
    """Base for producer and retriever configs.

    Subclasses declare fields with defaults and a description; the field's type
    does the validation. Unknown keys are rejected, never ignored.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, validate_default=True)


def parse_config(config_cls: type[C], values: Mapping[str, Any] | None, owner: str) -> C:
    """Build ``config_cls`` from ``values`` or raise one ConfigError naming the key and the fix."""
    values = dict(values or {})
    try:
        return config_cls(**values)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(config)"
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(config_cls.model_fields))
                problems.append(f"unknown key {key!r} (known keys: {known})")
            else:
                problems.append(f"{key}={err.get('input')!r}: {err['msg']}")
        raise ConfigError(f"{owner} config: " + "; ".join(problems)) from None


def parse_cli_value(raw: str) -> Any:
    """Turn a KEY=VALUE string value into an int, float, bool, null or string."""
    import yaml

    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def parse_key_values(pairs: list[str] | tuple[str, ...], what: str) -> dict[str, Any]:
    """Parse CLI ``KEY=VALUE`` pairs; a pair without '=' is an error naming it."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {pair!r} is not KEY=VALUE")
        if key in out:
            raise ConfigError(f"{what} key {key!r} given twice")
        out[key] = parse_cli_value(value)
    return out
