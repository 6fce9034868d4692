"""Translation of abstract matches and the AND with the primary route's conditions."""

from __future__ import annotations

import pytest
from routers_istio.hosts import canonical, host_for, same_host
from routers_istio.matches import Disjoint, Undecidable, combine, cross_product, merge, to_istio

from routers.model import RequestMatch


def m(**kw: object) -> RequestMatch:
    return RequestMatch.parse(kw)


def test_to_istio_uses_native_string_matches() -> None:
    got = to_istio(
        m(
            headers=[{"name": "X-Canary", "prefix": "v1.2"}, {"name": "x-b", "regex": "a|b"}],
            path={"exact": "/api"},
            method="POST",
            queryParams=[{"name": "Variant", "exact": "x"}],
        )
    )
    assert got == [
        {
            "uri": {"exact": "/api"},
            "method": {"exact": "POST"},
            # Istio wants lower-case header keys; a prefix stays a prefix (no regex needed).
            "headers": {"x-canary": {"prefix": "v1.2"}, "x-b": {"regex": "a|b"}},
            # Query parameter names are case-sensitive.
            "queryParams": {"Variant": {"exact": "x"}},
        }
    ]


@pytest.mark.parametrize(
    ("prefix", "want"),
    [
        ("/api", [{"exact": "/api"}, {"prefix": "/api/"}]),
        ("/api/", [{"exact": "/api"}, {"prefix": "/api/"}]),  # trailing '/' ignored
        ("/a/b", [{"exact": "/a/b"}, {"prefix": "/a/b/"}]),
        ("/", [{"prefix": "/"}]),
    ],
)
def test_path_prefix_is_element_wise(prefix: str, want: list[dict[str, str]]) -> None:
    """Istio's uri prefix compares characters (``/api`` would match ``/apix``); ours does not."""
    got = to_istio(m(path={"prefix": prefix}, method="GET"))
    assert got == [{"uri": u, "method": {"exact": "GET"}} for u in want]


@pytest.mark.parametrize(
    ("theirs", "ours", "want"),
    [
        ({"prefix": "/api"}, {"exact": "/api/v2"}, {"exact": "/api/v2"}),
        ({"prefix": "/api"}, {"prefix": "/api/v2"}, {"prefix": "/api/v2"}),
        ({"prefix": "/api/v2"}, {"prefix": "/api"}, {"prefix": "/api/v2"}),
        ({"exact": "/api/v2"}, {"prefix": "/api"}, {"exact": "/api/v2"}),
        ({"exact": "/a1"}, {"regex": "/a[0-9]"}, {"exact": "/a1"}),
        ({"regex": "/a[0-9]"}, {"exact": "/a7"}, {"exact": "/a7"}),
        ({"regex": "/a.*"}, {"regex": "/a.*"}, {"regex": "/a.*"}),
        ({}, {"exact": "x"}, {"exact": "x"}),  # presence-only header
    ],
)
def test_combine_narrows(
    theirs: dict[str, str], ours: dict[str, str], want: dict[str, str]
) -> None:
    assert combine(theirs, ours) == want


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ({"prefix": "/api"}, {"exact": "/web"}),
        ({"prefix": "/api"}, {"prefix": "/web"}),
        ({"exact": "/a"}, {"exact": "/b"}),
        ({"exact": "/a"}, {"regex": "/b.*"}),
        ({"regex": "/a[0-9]"}, {"exact": "/ab"}),
    ],
)
def test_combine_detects_disjoint(theirs: dict[str, str], ours: dict[str, str]) -> None:
    with pytest.raises(Disjoint):
        combine(theirs, ours)


def test_combine_refuses_what_istio_cannot_express() -> None:
    with pytest.raises(Undecidable, match="regex"):
        combine({"regex": "/a.*"}, {"regex": "/b.*"})
    with pytest.raises(Undecidable):
        combine({"prefix": "/api"}, {"regex": "/api/[0-9]+"})


def test_uri_prefix_slash_is_implied_by_any_path() -> None:
    assert combine({"prefix": "/"}, {"regex": "/v[0-9]+"}, uri=True) == {"regex": "/v[0-9]+"}
    with pytest.raises(Undecidable):
        combine({"prefix": "/"}, {"regex": "/v[0-9]+"})  # not a uri: '/' is a real prefix


def test_merge_keeps_every_primary_condition_and_folds_header_case() -> None:
    primary = {
        "uri": {"prefix": "/api"},
        "headers": {"X-Tenant": {"exact": "a"}},
        "gateways": ["mesh"],
        "port": 8080,
        "withoutHeaders": {"x-probe": {}},
        "sourceLabels": {"app": "web"},
    }
    (ours,) = to_istio(
        m(headers=[{"name": "x-tenant", "exact": "a"}, {"name": "x-c", "exact": "1"}])
    )
    got = merge(primary, ours)
    assert got == {**primary, "headers": {"X-Tenant": {"exact": "a"}, "x-c": {"exact": "1"}}}
    assert primary["headers"] == {"X-Tenant": {"exact": "a"}}  # input untouched


def test_merge_refuses_case_sensitive_path_on_ignore_uri_case() -> None:
    with pytest.raises(Undecidable, match="ignoreUriCase"):
        merge({"ignoreUriCase": True}, to_istio(m(path={"exact": "/Api"}))[0])


def test_cross_product_drops_disjoint_pairs_and_never_returns_empty() -> None:
    primary = [{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/web"}}]
    ours = [m(path={"prefix": "/api/v2"}), m(headers=[{"name": "x", "exact": "1"}])]
    assert cross_product(primary, ours) == [
        {"uri": {"exact": "/api/v2"}},
        {"uri": {"prefix": "/api/v2/"}},
        {"uri": {"prefix": "/api"}, "headers": {"x": {"exact": "1"}}},
        {"uri": {"prefix": "/web"}, "headers": {"x": {"exact": "1"}}},
    ]
    with pytest.raises(Disjoint):
        cross_product([{"uri": {"prefix": "/api"}}], [m(path={"exact": "/web"})])
    assert cross_product(None, ours) == [e for o in ours for e in to_istio(o)]
    # An element-wise prefix never reaches a longer sibling path the primary serves.
    assert cross_product([{"uri": {"prefix": "/ap"}}], [m(path={"prefix": "/api"})]) == [
        {"uri": {"exact": "/api"}},
        {"uri": {"prefix": "/api/"}},
    ]


def test_hosts_resolve_like_istio() -> None:
    assert canonical("svc", "ns") == "svc.ns"
    assert canonical("svc.ns", "other") == "svc.ns"
    assert canonical("svc.ns.svc", None) == "svc.ns"
    assert canonical("svc.ns.svc.cluster.local", None) == "svc.ns"
    assert canonical("svc.ns.svc.corp.internal", None) == "svc.ns"
    assert canonical("api.example.com", "ns") == "api.example.com"
    assert same_host("svc", "a", "svc.a.svc.cluster.local", None)
    # Argo cut hosts at the first dot: same name, other namespace, was "the same Service".
    assert not same_host("svc", "a", "svc.b.svc.cluster.local", None)
    assert host_for("exp", "app", "app") == "exp"
    assert host_for("exp", "app", "edge") == "exp.app.svc.cluster.local"
