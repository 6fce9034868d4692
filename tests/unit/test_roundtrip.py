"""Property tests: valid states survive YAML/JSON round trips; invalid input only raises ConfigError."""

from __future__ import annotations

import contextlib
import json
import string
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from routers.errors import ConfigError
from routers.model import RoutingConfig, TrafficState

token = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=12)
value = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12
)
label = st.from_regex(r"^[a-z][a-z0-9-]{0,10}[a-z0-9]$", fullmatch=True)


def one_of_match(name: bool) -> st.SearchStrategy[dict[str, Any]]:
    kind = st.sampled_from(["exact", "prefix", "regex"])
    return st.builds(
        lambda k, n, v: (
            ({"name": n} if name else {})
            | {
                k: (
                    v
                    if k != "regex"
                    else "[a-z]+"
                    + v.replace("\\", "")
                    .replace("(", "")
                    .replace(")", "")
                    .replace("[", "")
                    .replace("]", "")
                    .replace("{", "")
                    .replace("}", "")
                    .replace("*", "")
                    .replace("+", "")
                    .replace("?", "")
                    .replace("|", "")
                    .replace("^", "")
                    .replace("$", "")
                )
            }
        ),
        kind,
        token,
        value,
    )


path = st.builds(
    lambda k, v: {k: "/" + v.replace("/", "")}, st.sampled_from(["exact", "prefix"]), value
)
match = st.fixed_dictionaries(
    {},
    optional={
        "headers": st.lists(one_of_match(True), max_size=3, unique_by=lambda h: h["name"].lower()),
        "path": path,
        "method": st.sampled_from(["GET", "POST", "PATCH"]),
        "queryParams": st.lists(one_of_match(True), max_size=2, unique_by=lambda h: h["name"]),
    },
).filter(
    lambda m: bool(m.get("headers") or m.get("path") or m.get("method") or m.get("queryParams"))
)


@st.composite
def states(draw: st.DrawFn) -> dict[str, Any]:
    total = draw(st.sampled_from([1, 100, 1000, 1_000_000]))
    weight = draw(st.integers(0, total))
    names = draw(st.lists(label, max_size=4, unique=True))
    split = draw(st.integers(0, len(names)))
    doc: dict[str, Any] = {"weight": weight, "total": total}
    doc["headerRoutes"] = [
        {"name": n, "matches": draw(st.lists(match, min_size=1, max_size=2))} for n in names[:split]
    ]
    doc["mirrorRoutes"] = [
        {
            "name": n,
            "matches": draw(st.lists(match, min_size=1, max_size=2)),
            "percentage": draw(st.sampled_from([0.5, 1, 10, 33.3, 100])),
        }
        for n in names[split:]
    ]
    return doc


@settings(max_examples=150, deadline=None)
@given(states())
def test_valid_states_round_trip_yaml_and_json(doc: dict[str, Any]) -> None:
    state = TrafficState.parse(doc)
    dumped = state.dump()
    assert TrafficState.parse(yaml.safe_load(yaml.safe_dump(dumped))) == state
    assert TrafficState.model_validate_json(json.dumps(dumped)) == state
    assert TrafficState.parse(json.loads(state.model_dump_json(by_alias=True))) == state


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**7), 10**7)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    [
        "weight",
        "total",
        "headerRoutes",
        "mirrorRoutes",
        "additionalDestinations",
        "name",
        "matches",
        "headers",
        "percentage",
        "x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=5) | json_values)
def test_random_documents_raise_only_config_error(doc: Any) -> None:
    try:
        TrafficState.parse(doc)
    except ConfigError as exc:
        assert exc.problems
        assert all(isinstance(p.message, str) and p.message for p in exc.problems)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "stableService",
                "canaryService",
                "istio",
                "plugins",
                "trafficRouting",
                "managedRoutes",
                "maxTrafficWeight",
                "nginx",
            ]
        ),
        json_values,
        max_size=6,
    )
    | json_values
)
def test_random_configs_raise_only_config_error(doc: Any) -> None:
    with contextlib.suppress(ConfigError):
        RoutingConfig.from_document(doc)
