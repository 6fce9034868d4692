"""Canary steps: our own step file, or ``spec.strategy.canary.steps`` of an Argo Rollout.

Traffic steps become the state verbs; pauses become waits. Rollout steps that are not about
traffic (``setCanaryScale``, ``analysis``, ``experiment``, ``plugin``) gate a real rollout, so
running them as no-ops would be the silent success this project exists to avoid: they are an
error unless the caller explicitly asks to skip them (and then each skip is reported).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field

from routers.errors import ConfigError, Problem
from routers.model._base import Model, require_mapping
from routers.model.state import (
    MAX_TOTAL,
    SetHeaderRoute,
    SetMirrorRoute,
    SetWeight,
    TrafficState,
)

__all__ = [
    "Pause",
    "Step",
    "StepFile",
    "argo_set_header_route",
    "argo_set_mirror_route",
    "parse_duration",
    "steps_from_document",
]

_DURATION = re.compile(r"(\d+)(s|m|h)?")


def parse_duration(value: int | str, path: str) -> float:
    """Argo's pause duration: an integer (seconds) or ``<n>s|m|h``."""
    if isinstance(value, bool):
        raise ConfigError([Problem(path, "duration must be a number of seconds or '<n>s|m|h'")])
    if isinstance(value, int):
        seconds = value
    else:
        m = _DURATION.fullmatch(str(value).strip())
        if not m:
            raise ConfigError(
                [Problem(path, f"invalid duration {value!r} (use e.g. 30, '30s', '5m', '1h')")]
            )
        seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if seconds < 0:
        raise ConfigError([Problem(path, "duration must not be negative")])
    return float(seconds)


class Pause(Model):
    kind: Literal["pause"] = "pause"
    duration: Annotated[float, Field(ge=0)] | None = None
    """Seconds; ``None`` waits for ``routers promote``."""


Step = SetWeight | SetHeaderRoute | SetMirrorRoute | Pause


class StepFile(Model):
    steps: Annotated[tuple[Step, ...], Field(strict=False, min_length=1)]

    def states(self, initial: TrafficState) -> list[TrafficState]:
        """The state after each step (pauses repeat the previous state)."""
        out: list[TrafficState] = []
        state = initial
        for step in self.steps:
            if not isinstance(step, Pause):
                state = step.apply(state)
            out.append(state)
        return out


def _step(doc: Any, path: str, *, argo: bool) -> Step:
    doc = require_mapping(doc, path)
    if len(doc) != 1:
        raise ConfigError(
            [Problem(path, f"a step has exactly one key, got {sorted(doc) or 'none'}")]
        )
    ((key, value),) = doc.items()
    where = f"{path}.{key}"
    if key == "setWeight":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOTAL:
            raise ConfigError([Problem(where, "must be an integer weight")])
        return SetWeight(weight=value)
    if key == "pause":
        body = require_mapping(value if value is not None else {}, where)
        unknown = sorted(set(body) - {"duration"})
        if unknown:
            raise ConfigError([Problem(f"{where}.{unknown[0]}", "unknown field")])
        duration = body.get("duration")
        return Pause(
            duration=None if duration is None else parse_duration(duration, f"{where}.duration")
        )
    if key == "setHeaderRoute":
        if argo:
            return argo_set_header_route(value, where)
        return _parse(SetHeaderRoute, dict(require_mapping(value, where)), where)
    if key == "setMirrorRoute":
        if argo:
            return argo_set_mirror_route(value, where)
        return _parse(SetMirrorRoute, dict(require_mapping(value, where)), where)
    raise ConfigError(
        [Problem(where, "not a traffic step (setWeight, setHeaderRoute, setMirrorRoute, pause)")]
    )


_M = TypeVar("_M", bound=Model)


def _parse(model: type[_M], body: Any, where: str) -> _M:
    try:
        return model.parse(body)
    except ConfigError as exc:
        raise exc.within(where) from None


def _string_match(value: Any, path: str) -> dict[str, Any]:
    return dict(require_mapping(value, path))


def _argo_header_matches(match: Any, path: str) -> list[dict[str, Any]]:
    """Argo ``[{headerName, headerValue: StringMatch}]``: each entry is its own (ORed) match,
    as Argo's Istio router does."""
    if match is None:
        return []
    if not isinstance(match, Sequence) or isinstance(match, str):
        raise ConfigError([Problem(path, "expected a list")])
    out = []
    for i, raw in enumerate(match):
        m = require_mapping(raw, f"{path}[{i}]")
        out.append(
            {
                "headers": [
                    {
                        "name": m.get("headerName"),
                        **_string_match(m.get("headerValue"), f"{path}[{i}].headerValue"),
                    }
                ]
            }
        )
    return out


def _argo_route_matches(match: Any, path: str) -> list[dict[str, Any]]:
    """Argo ``[{method, path, headers: {name: StringMatch}}]`` (fields ANDed, entries ORed)."""
    if match is None:
        return []
    if not isinstance(match, Sequence) or isinstance(match, str):
        raise ConfigError([Problem(path, "expected a list")])
    out = []
    for i, raw in enumerate(match):
        m = require_mapping(raw, f"{path}[{i}]")
        item: dict[str, Any] = {}
        if m.get("method") is not None:
            method = _string_match(m["method"], f"{path}[{i}].method")
            if set(method) != {"exact"}:
                raise ConfigError(
                    [
                        Problem(
                            f"{path}[{i}].method",
                            "only an exact method match can be expressed by every target",
                        )
                    ]
                )
            item["method"] = method["exact"]
        if m.get("path") is not None:
            item["path"] = _string_match(m["path"], f"{path}[{i}].path")
        headers = m.get("headers") or {}
        item["headers"] = [
            {"name": name, **_string_match(v, f"{path}[{i}].headers.{name}")}
            for name, v in require_mapping(headers, f"{path}[{i}].headers").items()
        ]
        out.append(item)
    return out


def argo_set_header_route(value: Any, where: str = "setHeaderRoute") -> SetHeaderRoute:
    """Argo's ``setHeaderRoute`` (``{name, match}``) as our verb; an empty match removes."""
    body = require_mapping(value, where)
    converted = {
        "name": body.get("name"),
        "matches": _argo_header_matches(body.get("match"), f"{where}.match"),
    }
    return _parse(SetHeaderRoute, converted, where)


def argo_set_mirror_route(value: Any, where: str = "setMirrorRoute") -> SetMirrorRoute:
    """Argo's ``setMirrorRoute`` (``{name, match, percentage}``) as our verb; percentage
    defaults to 100, as in Argo's Istio router; an empty match removes."""
    body = require_mapping(value, where)
    converted: dict[str, Any] = {
        "name": body.get("name"),
        "matches": _argo_route_matches(body.get("match"), f"{where}.match"),
    }
    if body.get("percentage") is not None:
        converted["percentage"] = body["percentage"]
    return _parse(SetMirrorRoute, converted, where)


_NON_TRAFFIC = ("setCanaryScale", "analysis", "experiment", "plugin")


def steps_from_document(
    doc: Any, *, source: str | None = None, skip_non_traffic: bool = False
) -> tuple[StepFile, list[str]]:
    """Steps from our step file (``steps:``) or a Rollout; returns the steps and skip notes."""
    doc = require_mapping(doc, "steps")
    argo = doc.get("kind") == "Rollout"
    if argo:
        canary = (((doc.get("spec") or {}).get("strategy") or {}).get("canary")) or {}
        raw = canary.get("steps")
        base = "spec.strategy.canary.steps"
    else:
        unknown = sorted(set(doc) - {"steps"})
        if unknown:
            raise ConfigError([Problem(unknown[0], "unknown field")], source=source)
        raw = doc.get("steps")
        base = "steps"
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ConfigError([Problem(base, "a non-empty list of steps is required")], source=source)
    steps: list[Step] = []
    skipped: list[str] = []
    problems: list[Problem] = []
    for i, item in enumerate(raw):
        path = f"{base}[{i}]"
        if (
            argo
            and isinstance(item, Mapping)
            and len(item) == 1
            and next(iter(item)) in _NON_TRAFFIC
        ):
            key = next(iter(item))
            if skip_non_traffic:
                skipped.append(f"{path}: {key} skipped (not a traffic step)")
                continue
            problems.append(
                Problem(
                    path,
                    f"{key} is not a traffic step; canary-routers cannot run it "
                    "(pass --skip-non-traffic-steps to skip such steps explicitly)",
                )
            )
            continue
        try:
            steps.append(_step(item, path, argo=argo))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems, source=source)
    return StepFile(steps=tuple(steps)), skipped
