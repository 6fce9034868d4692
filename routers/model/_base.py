"""Base class and error conversion shared by every input model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from routers.errors import ConfigError, Problem

M = TypeVar("M", bound="Model")


class Model(BaseModel):
    """Our own inputs: strict (no coercion), frozen, unknown fields rejected, camelCase on the wire."""

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @classmethod
    def parse(cls: type[M], data: Any, *, source: str | None = None) -> M:
        """Validate ``data``; raise :class:`ConfigError` naming every bad field path."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, source=source) from None

    def dump(self) -> dict[str, Any]:
        """Plain JSON-compatible dict in wire form (camelCase, no unset optionals)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as ``a.b[0].c`` (drops pydantic's internal union tags)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(_TAG_PREFIXES) or part in _INTERNAL:
            continue
        else:
            out += f".{part}" if out else part
    return out


_INTERNAL = frozenset({"[key]", "model", "list", "tuple", "dict"})
# pydantic's names for union members and wrapped validators; never part of a user's path
_TAG_PREFIXES = (
    "function-",
    "tagged-union[",
    "union[",
    "constrained-",
    "literal[",
    "is-instance[",
    "lax-",
    "json-or-python[",
    "chain[",
)


def config_error(
    exc: ValidationError, *, source: str | None = None, prefix: str = ""
) -> ConfigError:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = format_loc(tuple(err["loc"]))
        path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = str(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        problems.append(Problem(path, msg))
    return ConfigError(problems, source=source)


def require_mapping(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(what, f"expected a mapping, got {type(data).__name__}")])
    return data
