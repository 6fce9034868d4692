"""What a state means for one request, and the ``routers explain --request`` hook."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from routers.errors import WeightFitError
from routers.explain import explain_requests
from routers.io import load_documents, load_one
from routers.model import Cleanup, RoutingConfig, TrafficState
from routers.registry import Registry
from routers.simulate import intended, parse_request
from routers.simulate.meaning import keep_foreign
from routers.simulate.outcome import Outcome

F = Fraction
STATE = TrafficState.parse(
    {
        "weight": 20,
        "total": 200,
        "additionalDestinations": [{"service": "exp", "weight": 10}],
        "headerRoutes": [
            {"name": "h", "matches": [{"headers": [{"name": "X-Canary", "prefix": "al"}]}]}
        ],
        "mirrorRoutes": [
            {
                "name": "m",
                "percentage": 12.5,
                "matches": [{"method": "GET", "path": {"prefix": "/api"}}],
            },
            {"name": "both", "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}]},
        ],
    }
)


def meant(text: str, **kw: object) -> Outcome:
    return intended(STATE, parse_request(text), **kw).outcome  # type: ignore[arg-type]


def test_split_header_and_mirror() -> None:
    assert meant("GET /").shares == {"stable": F(170, 200), "canary": F(20, 200), "exp": F(10, 200)}
    assert meant("GET / -H x-canary:always").shares == {"canary": 1}
    assert meant("GET / -H x-canary:never").shares == meant("GET /").shares
    api = meant("GET /api/x")
    assert (api.shares, api.mirrors) == (meant("GET /").shares, {"canary": F(1, 8)})
    assert meant("POST /api/x").mirrors == {}


def test_route_order_follows_managed_routes() -> None:
    # Header routes come first by default; managedRoutes can put the mirror route first.
    assert meant("GET / -H X-Canary:always").via == "header route 'h'"
    first = meant("GET / -H X-Canary:always", managed_order=["both", "h", "m"])
    assert (first.via, first.mirrors) == ("mirror route 'both'", {"canary": 1})


def test_path_prefix_is_element_wise_and_string_prefixes_are_flagged() -> None:
    intent = intended(STATE, parse_request("GET /apix"))
    assert intent.outcome.mirrors == {}
    assert intent.ambiguous is not None and "/apix" in intent.ambiguous
    assert intended(STATE, parse_request("GET /api")).ambiguous is None


def test_keep_foreign_gives_the_canary_its_share_of_all_traffic() -> None:
    want = Outcome({"stable": F(4, 5), "canary": F(1, 5)})
    before = Outcome({"stable": F(20, 21), "legacy": F(1, 21)})
    got = keep_foreign(want, before, {"stable", "canary"})
    assert got.shares == {"stable": F(4, 5) - F(1, 21), "canary": F(1, 5), "legacy": F(1, 21)}
    ours = keep_foreign(want, before, {"stable", "canary"}, scope="ours")
    assert ours.shares == {"stable": F(16, 21), "canary": F(4, 21), "legacy": F(1, 21)}
    mirrored = Outcome(before.shares, {"audit": F(1, 20)})
    assert keep_foreign(want, mirrored, {"stable", "canary"}).mirrors == {"audit": F(1, 20)}
    header = Outcome({"canary": F(1)}, via="header route 'h'")
    assert keep_foreign(header, before, {"stable", "canary"}).shares == {"canary": F(1)}
    # The rule's own mirror to a destination we do not own stays, header routes included.
    mirrored = Outcome(before.shares, {"shadow": F(1)})
    assert keep_foreign(header, mirrored, {"stable", "canary"}).mirrors == {"shadow": F(1)}
    assert keep_foreign(want, mirrored, {"stable", "canary"}).mirrors == {"shadow": F(1)}
    with pytest.raises(WeightFitError, match="keep 4.762%"):
        keep_foreign(Outcome({"stable": F(1, 50), "canary": F(49, 50)}), before, {"stable"})


def test_explain_without_objects_prints_the_intent() -> None:
    config = RoutingConfig.parse({"stableService": "s", "canaryService": "c", "istio": {}})
    lines = list(explain_requests(config, STATE, [], ["GET / -H X-Canary:always"]))
    assert lines[0] == "request: GET / -H X-Canary:always"
    assert lines[1] == "  wanted: 100% -> c (via header route 'h')"
    assert "pass -f" in lines[2]
    cleanup = list(explain_requests(config, Cleanup(), [], ["/"]))
    assert cleanup[1] == "  wanted: 100% -> s"


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif("istio" not in Registry().names(), reason="istio plugin not installed")
def test_explain_routes_through_the_planned_objects() -> None:
    ex = ROOT / "examples" / "istio"
    config = RoutingConfig.from_document(load_one(str(ex / "routing.yaml")))
    state = TrafficState.parse(load_one(str(ex / "state.yaml")))
    docs = load_documents([str(ex / "live.yaml")])
    lines = list(
        explain_requests(
            config, state, docs, ["GET /admin -H X-Canary:always", "GET /x -H X-Canary:always"]
        )
    )
    assert any("checkout-admin" in ln and "[not managed: unchanged]" in ln for ln in lines)
    assert any(
        "100% -> checkout-canary" in ln and "canary-header" in ln and "[as wanted]" in ln
        for ln in lines
    )
