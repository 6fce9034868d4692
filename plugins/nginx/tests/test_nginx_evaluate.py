"""ingress-nginx: header -> cookie -> weight on the first canary of a location (spec §4.3)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from routers_nginx.evaluate import PREFIX, simulate_ingress_nginx

from routers.errors import UnsupportedError
from routers.simulate import parse_request
from routers.testing import route_scenario

F = Fraction


def ingress(
    name: str,
    service: str,
    *,
    path: str = "/",
    path_type: str = "Prefix",
    host: str | None = "shop.example.com",
    **annotations: str,
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": service, "port": {"number": 80}}},
                }
            ]
        }
    }
    if host:
        rule["host"] = host
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "annotations": {PREFIX + k.replace("_", "-"): v for k, v in annotations.items()},
        },
        "spec": {"ingressClassName": "nginx", "rules": [rule]},
    }


STABLE = ingress("main", "stable")


def canary(**annotations: str) -> dict[str, Any]:
    return ingress("main-canary", "canary", canary="true", **annotations)


def go(objs: list[dict[str, Any]], text: str) -> Any:
    return simulate_ingress_nginx(objs, parse_request(text))


def test_header_always_never_and_fall_through() -> None:
    objs = [STABLE, canary(canary_by_header="X-Canary", canary_by_cookie="c", canary_weight="30")]
    assert go(objs, "GET / -H X-Canary:always").shares == {"canary": 1}
    # "never" decides at once: the cookie and the weight are not consulted.
    assert go(objs, "GET / -H X-Canary:never -b c=always").shares == {"stable": 1}
    # Any other value falls through to the cookie, then the weight.
    assert go(objs, "GET / -H X-Canary:maybe -b c=always").shares == {"canary": 1}
    assert go(objs, "GET / -b c=never").shares == {"stable": 1}
    assert go(objs, "GET / -b c=other").shares == {"stable": F(7, 10), "canary": F(3, 10)}


def test_header_value_is_exact_and_never_is_not_special() -> None:
    objs = [
        STABLE,
        canary(canary_by_header="X-V", canary_by_header_value="beta", canary_weight="10"),
    ]
    assert go(objs, "GET / -H X-V:beta").shares == {"canary": 1}
    assert go(objs, "GET / -H X-V:Beta").shares == {"stable": F(9, 10), "canary": F(1, 10)}
    assert go(objs, "GET / -H X-V:never").shares == {"stable": F(9, 10), "canary": F(1, 10)}
    assert go(objs, "GET / -H X-V:always").shares == {"stable": F(9, 10), "canary": F(1, 10)}


def test_header_pattern_searches_unanchored() -> None:
    objs = [STABLE, canary(canary_by_header="X-V", canary_by_header_pattern="v1\\.2")]
    assert go(objs, "GET / -H X-V:xv1.2x").shares == {"canary": 1}
    assert go(objs, "GET / -H X-V:v1x2").shares == {"stable": 1}
    anchored = [STABLE, canary(canary_by_header="X-V", canary_by_header_pattern="^(v1\\.2)$")]
    assert go(anchored, "GET / -H X-V:xv1.2x").shares == {"stable": 1}
    # The value wins over the pattern when both are set.
    both = [
        STABLE,
        canary(canary_by_header="X-V", canary_by_header_value="a", canary_by_header_pattern="b"),
    ]
    assert go(both, "GET / -H X-V:b").shares == {"stable": 1}


@pytest.mark.parametrize("value", ["a b", "beta\n"])
def test_invalid_header_value_is_reset_to_always_never_semantics(value: str) -> None:
    """Go's ``$`` ends the text: BasicChars refuses a trailing newline too."""
    objs = [STABLE, canary(canary_by_header="X-V", canary_by_header_value=value)]
    assert go(objs, "GET / -H X-V:beta").shares == {"stable": 1}
    assert go(objs, "GET / -H X-V:always").shares == {"canary": 1}


@pytest.mark.parametrize(
    ("weight", "total", "share"),
    [
        ("10", None, F(10, 100)),
        ("5", "10", F(5, 100)),  # a total below 100 is raised to 100
        ("5", "100", F(5, 100)),
        ("5", "1000", F(5, 1000)),
        ("2000", "1000", F(1)),
        ("abc", None, F(0)),
        ("-3", None, F(0)),
        ("10\n", None, F(0)),  # strconv.Atoi: no trailing newline, no spaces
        (" 10", None, F(0)),
    ],
)
def test_weight_total_rules(weight: str, total: str | None, share: Fraction) -> None:
    ann = {"canary_weight": weight} | ({"canary_weight_total": total} if total else {})
    out = go([STABLE, canary(**ann)], "GET /")
    assert out.share("canary") == share
    assert out.share("stable") == 1 - share


def test_only_first_canary_and_exact_location_merge() -> None:
    first = ingress("c1", "canary", canary="true", canary_weight="100")
    second = ingress("c2", "other", canary="true", canary_weight="100")
    assert go([STABLE, first, second], "GET /").shares == {"canary": 1}
    assert go([STABLE, second, first], "GET /").shares == {"other": 1}
    wrong_type = ingress(
        "c", "canary", canary="true", canary_weight="100", path_type="ImplementationSpecific"
    )
    assert go([STABLE, wrong_type], "GET /").shares == {"stable": 1}
    wrong_host = ingress(
        "c", "canary", canary="true", canary_weight="100", host="other.example.com"
    )
    assert go([STABLE, wrong_host], "GET / -H Host:shop.example.com").shares == {"stable": 1}
    disabled = ingress("c", "canary", canary="false", canary_weight="100", path="/x")
    assert go([STABLE, disabled], "GET /x").shares == {"canary": 1}  # just another primary


def test_locations_exact_prefix_and_string_prefix() -> None:
    objs = [
        ingress("a", "root"),
        ingress("b", "api", path="/api"),
        ingress("c", "exact", path="/api", path_type="Exact"),
        ingress("d", "impl", path="/static", path_type="ImplementationSpecific"),
    ]
    assert go(objs, "GET /api").shares == {"exact": 1}
    assert go(objs, "GET /api/x").shares == {"api": 1}
    assert go(objs, "GET /apix").shares == {"root": 1}
    assert go(objs, "GET /staticfiles").shares == {"impl": 1}  # nginx string prefix
    assert go([ingress("b", "api", path="/api")], "GET /other").status == 404


def test_underscore_headers_are_dropped() -> None:
    objs = [STABLE, canary(canary_by_header="X_Canary")]
    assert go(objs, "GET / -H X_Canary:always").shares == {"stable": 1}


def test_mirror_target_on_primary_only() -> None:
    target = "http://canary.shop.svc.cluster.local$request_uri"
    main = ingress("main", "stable", mirror_target=target)
    out = go([main, canary(canary_weight="20")], "GET /")
    assert out.mirrors == {"canary": 1}
    assert out.shares == {"stable": F(4, 5), "canary": F(1, 5)}
    ignored = go([STABLE, canary(mirror_target=target)], "GET /")
    assert ignored.mirrors == {}


def test_header_routed_requests_are_not_mirrored() -> None:
    """mirror-target copies every request of the stable Ingress, header-routed ones included, so
    the plugin must refuse the combination (it first did not: found by the equivalence
    property, now fixed)."""
    state = {
        "weight": 10,
        "headerRoutes": [
            {
                "name": "beta-testers",
                "matches": [{"headers": [{"name": "X-Canary", "exact": "beta"}]}],
            }
        ],
        "mirrorRoutes": [
            {"name": "shadow", "percentage": 100, "matches": [{"path": {"prefix": "/"}}]}
        ],
    }
    example = Path(__file__).resolve().parents[3] / "examples" / "nginx"
    try:
        (routed,) = route_scenario(
            example, state, "GET / -H X-Canary:beta -H Host:shop.example.com"
        )
    except UnsupportedError:
        return
    got = routed.outcome
    assert (dict(got.shares), dict(got.mirrors)) == ({"shop-canary": 1}, {})


def test_the_configured_annotation_prefix_is_read() -> None:
    """A controller started with another --annotations-prefix reads only that prefix."""
    stable = ingress("main", "stable")
    weighted = canary(canary_weight="30")
    for obj in (stable, weighted):
        ann = obj["metadata"].get("annotations") or {}
        obj["metadata"]["annotations"] = {
            k.replace(PREFIX, "custom.example.com/"): v for k, v in ann.items()
        }
    req = parse_request("GET / -H Host:shop.example.com")
    assert simulate_ingress_nginx([stable, weighted], req).share("canary") == 0
    got = simulate_ingress_nginx([stable, weighted], req, prefix="custom.example.com/")
    assert got.share("canary") == Fraction(3, 10)
