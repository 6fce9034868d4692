"""Injection through config values and names (issue 13, part 2), as an attacker would try it.

Every value that reaches an annotation, from the state, the config or a live object, passes one
check (``annotations.value_problem``); annotations ingress-nginx rates High/Critical risk and
values outside the safe sets need ``allowUnsafeAnnotations``.
"""

from __future__ import annotations

from typing import Any

import pytest
from nginx_fixtures import P, apply, config, header_route, ingress, live, mirror_route, plan, state
from routers_nginx import annotations as ann

from routers.errors import ConfigError, PlanError
from routers.planning.objects import ObjectRef, get_annotations
from routers.planning.ownership import DOMAIN

CANARY = ObjectRef("networking.k8s.io", "Ingress", "prod", "app-canary")
STABLE = ObjectRef("networking.k8s.io", "Ingress", "prod", "app")


def problems(nginx: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        config({"stableIngress": "app", **nginx})
    return {p.path: p.message for p in exc.value.problems}


def emitted(nginx: dict[str, Any], **desired: Any) -> dict[str, dict[str, str]]:
    """Annotations of both Ingresses after planning ``desired`` with the section ``nginx``."""
    objs = live(ingress())
    out = apply(plan(config({"stableIngress": "app", **nginx}), objs, state(**desired)), objs)
    return {"canary": get_annotations(out[CANARY]), "stable": get_annotations(out[STABLE])}


# -- the examples of the issue ------------------------------------------------------------------


def test_canary_by_cookie_with_trailing_newline_is_refused() -> None:
    assert "not a cookie name" in problems({"canaryByCookie": "beta\n"})["canaryByCookie"]


def test_mirror_host_with_trailing_newline_is_refused() -> None:
    found = problems({"mirrorHost": "canary.example.com\n"})
    assert "not a valid mirror host" in found["mirrorHost"]


@pytest.mark.parametrize("key", ["configuration-snippet", "server-snippet"])
@pytest.mark.parametrize("field", ["additionalIngressAnnotations", "canaryIngressAnnotations"])
def test_snippet_annotations_are_refused(field: str, key: str) -> None:
    full = key if field == "additionalIngressAnnotations" else f"{P}/{key}"
    message = problems({field: {full: "return 200;"}})[f"{field}.{full}"]
    assert f"{P}/{key} is a Critical-risk annotation" in message
    assert "CVE-2025-1974" in message
    assert "allowUnsafeAnnotations" in message


@pytest.mark.parametrize(
    "value",
    [
        "ewma;\n  proxy_pass http://evil",
        "a;b",
        "a{b",
        "a}b",
        "'a'",
        '"a"',
        "a\nb",
        "a\r\nb",
        "a#b",
        "a\\b",
        "a`b",
        " ewma",
    ],
)
@pytest.mark.parametrize("field", ["additionalIngressAnnotations", "canaryIngressAnnotations"])
def test_values_outside_the_safe_set_are_refused(field: str, value: str) -> None:
    key = "load-balance" if field == "additionalIngressAnnotations" else f"{P}/load-balance"
    message = problems({field: {key: value}})[f"{field}.{key}"]
    assert repr(value) in message
    assert "CVE-2025-1974" in message
    assert "allowUnsafeAnnotations" in message


@pytest.mark.parametrize("key", ["example.com/team", "nginx.org/location-snippets"])
def test_foreign_prefixes_pass_the_same_checks(key: str) -> None:
    """Keys of other controllers too: ingress-nginx's webhook refuses any ``*-snippet``."""
    value = "a;b" if key == "example.com/team" else "return 200"
    assert f"canaryIngressAnnotations.{key}" in problems({"canaryIngressAnnotations": {key: value}})


# -- the risk levels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(ann.CRITICAL | (ann.HIGH - {"mirror-host", "mirror-target"}))
)
def test_high_and_critical_risk_annotations_are_refused(name: str) -> None:
    level = "Critical" if name in ann.CRITICAL else "High"
    found = problems({"additionalIngressAnnotations": {name: "x"}})
    assert f"is a {level}-risk annotation" in found[f"additionalIngressAnnotations.{name}"]


def test_risk_follows_the_configured_prefix() -> None:
    assert ann.risk(f"{P}/server-snippet", P) == "Critical"
    assert ann.risk("custom.io/auth-url", "custom.io") == "High"
    assert ann.risk(f"{P}/auth-url", "custom.io") is None  # not read by this controller
    assert ann.risk("other.io/x-snippet", P) == "Critical"  # the webhook's suffix rule
    assert ann.risk(f"{P}/load-balance", P) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("load-balance", "ewma"),
        ("proxy-body-size", "8m"),
        ("cors-allow-origin", "https://a.example.com, https://*.b.example.com"),
        ("upstream-vhost", "$host"),
        ("proxy-ssl-ciphers", "ECDHE-RSA-AES128-GCM-SHA256:!aNULL"),
        ("custom-http-errors", "404,503"),
        ("affinity", "cookie"),
        ("example.com/owner", "team-a"),
    ],
)
def test_ordinary_annotations_still_pass(key: str, value: str) -> None:
    cfg = config({"stableIngress": "app", "additionalIngressAnnotations": {key: value}})
    full = key if "/" in key else f"{P}/{key}"
    assert cfg.static == {full: value}
    assert cfg.unsafe == frozenset()


# -- allowUnsafeAnnotations ----------------------------------------------------------------------

SNIPPET = 'more_set_headers "X-Canary: yes";\nadd_header X-Served-By canary;'


@pytest.mark.parametrize("listed", ["configuration-snippet", f"{P}/configuration-snippet"])
def test_allow_unsafe_annotations_passes_listed_keys_verbatim(listed: str) -> None:
    nginx = {
        "additionalIngressAnnotations": {"configuration-snippet": SNIPPET},
        "allowUnsafeAnnotations": [listed],
    }
    cfg = config({"stableIngress": "app", **nginx})
    assert cfg.unsafe == {f"{P}/configuration-snippet"}
    objs = live(ingress())
    result = plan(cfg, objs, state(weight=10))
    out = apply(result, objs)
    assert get_annotations(out[CANARY])[f"{P}/configuration-snippet"] == SNIPPET
    warning = [n.message for n in result.notes if "allowUnsafeAnnotations" in n.message]
    assert warning == [
        f"{P}/configuration-snippet is passed to the canary Ingress verbatim "
        "(allowUnsafeAnnotations): it is not checked against ingress-nginx's risk levels or "
        "safe value characters"
    ]


def test_allow_unsafe_annotations_lifts_the_value_check_too() -> None:
    cfg = config(
        {
            "stableIngress": "app",
            "canaryIngressAnnotations": {"example.com/json": '{"a": 1}'},
            "allowUnsafeAnnotations": ["example.com/json"],
        }
    )
    assert cfg.static == {"example.com/json": '{"a": 1}'}


def test_allow_unsafe_annotations_unused_entry_is_an_error() -> None:
    found = problems({"allowUnsafeAnnotations": ["server-snippet"]})
    assert found == {
        "allowUnsafeAnnotations": f"{P}/server-snippet is not set by additionalIngressAnnotations "
        "or canaryIngressAnnotations"
    }


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("canary-weight", "5", "traffic state's weight"),
        (f"{DOMAIN}/managed", "{}", "bookkeeping"),
        ("kubernetes.io/ingress.class", "other", "copied from the stable Ingress"),
        ("canary-by-header-value", "a;b", "would drop it"),
        ("canary-by-cookie", "c\n", "control character"),
    ],
)
def test_allow_unsafe_annotations_never_overrides_our_rules(
    key: str, value: str, fragment: str
) -> None:
    nginx: dict[str, Any] = {
        "canaryIngressAnnotations": {key if "/" in key else f"{P}/{key}": value},
        "allowUnsafeAnnotations": [key],
    }
    if "header-value" in key:
        nginx["canaryIngressAnnotations"][f"{P}/canary-by-header"] = "X-Canary"
    found = problems(nginx)
    assert any(fragment in message for message in found.values()), found


# -- every value we write passes the same check --------------------------------------------------


def test_class_annotation_copied_from_the_stable_ingress_is_checked() -> None:
    stable = ingress(annotations={"kubernetes.io/ingress.class": "nginx;\nlocation /x {}"})
    with pytest.raises(PlanError) as exc:
        plan(config(), live(stable), state(weight=10))
    assert "refusing to write annotation kubernetes.io/ingress.class" in str(exc.value)
    assert "control character" in str(exc.value)


def test_custom_prefix_values_are_checked_against_their_validators() -> None:
    """With ``annotationPrefix`` the canary keys move; their charsets move with them."""
    nginx = {
        "annotationPrefix": "custom.io",
        "additionalIngressAnnotations": {
            "canary-by-header": "X-A",
            "canary-by-header-value": "a b",
        },
    }
    found = problems(nginx)
    assert "would drop it" in found["additionalIngressAnnotations.canary-by-header-value"]


@pytest.mark.parametrize(
    "desired",
    [
        {"weight": 33, "total": 70, "headerRoutes": [header_route()]},
        {"weight": 1, "headerRoutes": [header_route(prefix="v1.2/")]},
        {"weight": 1, "headerRoutes": [header_route(regex="^(a|b)[0-9]{2}$")]},
        {"weight": 0, "mirrorRoutes": [mirror_route()]},
    ],
)
def test_every_emitted_value_is_in_its_safe_set(desired: dict[str, Any]) -> None:
    nginx = {"canaryByCookie": "beta-users", "mirrorHost": "$host"}
    for anns in emitted(nginx, **desired).values():
        for key, value in anns.items():
            if not key.startswith(DOMAIN + "/"):
                assert ann.value_problem(key, value, P) is None, (key, value)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        (f"{P}/canary-by-header-value", "beta\n", "control character"),
        (f"{P}/canary-by-header-pattern", "a;b", "outside ingress-nginx's IsValidRegex"),
        (f"{P}/mirror-target", "http://x$request_uri;}", "outside letters, digits"),
        (f"{P}/mirror-host", "{x}", "outside letters, digits"),
        (f"{P}/canary-weight", "", "empty value"),
        ("example.com/x", "a\u2028b", "control character"),
        ("example.com/x", "a ", "trailing spaces"),
    ],
)
def test_value_problem(key: str, value: str, fragment: str) -> None:
    problem = ann.value_problem(key, value, P)
    assert problem is not None
    assert fragment in problem


# -- annotationValueWordBlocklist ----------------------------------------------------------------

# The list ingress-nginx's configmap docs suggest for annotation-value-word-blocklist.
SUGGESTED = ["load_module", "lua_package", "_by_lua", "location", "root", "proxy_pass"]


def test_blocklisted_word_in_a_state_value_is_refused_before_the_webhook_would() -> None:
    cfg = config({"stableIngress": "app", "annotationValueWordBlocklist": SUGGESTED})
    desired = state(weight=5, headerRoutes=[header_route(exact="rootbeer")])
    with pytest.raises(PlanError) as exc:
        plan(cfg, live(ingress()), desired)
    assert f"annotation {P}/canary-by-header-value" in str(exc.value)
    assert "'root', listed in annotationValueWordBlocklist" in str(exc.value)


def test_blocklist_applies_to_allowed_unsafe_annotations_and_only_under_the_prefix() -> None:
    found = problems(
        {
            "annotationValueWordBlocklist": SUGGESTED,
            "additionalIngressAnnotations": {"configuration-snippet": "proxy_pass http://x;"},
            "canaryIngressAnnotations": {"example.com/note": "root cause: none"},
            "allowUnsafeAnnotations": ["configuration-snippet"],
        }
    )
    assert list(found) == ["additionalIngressAnnotations.configuration-snippet"]
    assert "'proxy_pass', listed in annotationValueWordBlocklist" in next(iter(found.values()))


@pytest.mark.parametrize("word", ["", " root", "a\nb"])
def test_blocklist_words_are_checked(word: str) -> None:
    assert "annotationValueWordBlocklist[0]" in problems({"annotationValueWordBlocklist": [word]})
