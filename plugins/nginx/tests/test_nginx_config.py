"""The nginx section: Argo's fields validate unchanged; every error names its field path."""

from __future__ import annotations

import re
from typing import Any

import pytest
from nginx_fixtures import P, config, routing
from routers_nginx.config import canary_ingress_name

from routers.engine import bind
from routers.errors import ConfigError


def problems(nginx: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        config(nginx)
    return {p.path: p.message for p in exc.value.problems}


def test_argo_section_validates_unchanged() -> None:
    cfg = config(
        {
            "stableIngress": "app",
            "annotationPrefix": "custom.ingress.kubernetes.io",
            "additionalIngressAnnotations": {"load-balance": "ewma", "example.com/x": "1"},
            "canaryIngressAnnotations": {
                "custom.ingress.kubernetes.io/load-balance": "round_robin"
            },
        }
    )
    assert cfg.static == {
        "custom.ingress.kubernetes.io/load-balance": "round_robin",
        "example.com/x": "1",
    }
    assert [p.stable.name for p in cfg.pairs] == ["app"]
    assert [p.canary.name for p in cfg.pairs] == ["app-canary"]


def test_defaults() -> None:
    section = config().section
    assert section.annotation_prefix == "nginx.ingress.kubernetes.io"
    assert section.allow_mirror_round_up is False
    assert section.weight_total_annotation is True


@pytest.mark.parametrize(
    "body",
    [{"stableIngress": "a", "stableIngresses": ["b"]}, {}, {"stableIngresses": []}],
)
def test_exactly_one_stable_ingress_field(body: dict[str, Any]) -> None:
    assert "exactly one of stableIngress or stableIngresses" in " ".join(problems(body).values())


def test_duplicate_stable_ingresses() -> None:
    assert "'a' is listed twice" in " ".join(problems({"stableIngresses": ["a", "a"]}).values())


def test_canary_name_colliding_with_another_stable_ingress() -> None:
    found = problems({"stableIngresses": ["app", "app-canary"]})
    assert "another stable Ingress" in found["stableIngresses[0]"]


def test_unknown_field_and_strict_types() -> None:
    found = problems({"stableIngress": "app", "stableIngres": "x", "allowMirrorRoundUp": "true"})
    assert found["stableIngres"] == "unknown field"
    assert "allowMirrorRoundUp" in found


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("canary", "sets it on the canary Ingress"),
        ("canary-weight", "traffic state's weight"),
        ("canary-weight-total", "traffic state's total"),
        ("mirror-target", "ignores mirror annotations on a canary"),
    ],
)
def test_owned_annotations_cannot_be_configured(key: str, fragment: str) -> None:
    found = problems({"stableIngress": "app", "additionalIngressAnnotations": {key: "1"}})
    assert fragment in found[f"additionalIngressAnnotations.{key}"]


def test_prefixed_owned_annotation_in_canary_ingress_annotations() -> None:
    found = problems(
        {"stableIngress": "app", "canaryIngressAnnotations": {f"{P}/canary-weight": "5"}}
    )
    assert (
        f"{P}/canary-weight cannot be set" in found[f"canaryIngressAnnotations.{P}/canary-weight"]
    )


@pytest.mark.parametrize(
    ("key", "value", "bad"),
    [
        ("canary-by-header-value", "a,b", ","),
        ("canary-by-header-value", "a=b", "="),
        ("canary-by-header", "X Canary", " "),
        ("canary-by-cookie", 'c"', '"'),
        ("canary-by-header-pattern", "a;b", ";"),
    ],
)
def test_static_canary_values_checked_against_ingress_nginx_charsets(
    key: str, value: str, bad: str
) -> None:
    body: dict[str, Any] = {"stableIngress": "app", "additionalIngressAnnotations": {key: value}}
    if key.startswith("canary-by-header-"):
        body["additionalIngressAnnotations"]["canary-by-header"] = "X-Canary"
    message = problems(body)[f"additionalIngressAnnotations.{key}"]
    assert repr(value) in message
    assert repr(bad) in message


def test_control_characters_never_reach_an_annotation() -> None:
    found = problems(
        {"stableIngress": "app", "canaryIngressAnnotations": {"example.com/x": "a\nb"}}
    )
    assert "control character" in found["canaryIngressAnnotations.example.com/x"]


@pytest.mark.parametrize("key", ["bad key", "-x", "a/b/c", "UPPER.example/x"])
def test_invalid_annotation_keys(key: str) -> None:
    found = problems({"stableIngress": "app", "canaryIngressAnnotations": {key: "1"}})
    assert "not a valid annotation key" in found[f"canaryIngressAnnotations.{key}"]


def test_our_bookkeeping_and_class_cannot_be_configured() -> None:
    found = problems(
        {
            "stableIngress": "app",
            "canaryIngressAnnotations": {
                "canary-routers.io/managed": "{}",
                "kubernetes.io/ingress.class": "other",
            },
        }
    )
    assert "bookkeeping" in found["canaryIngressAnnotations.canary-routers.io/managed"]
    assert (
        "copied from the stable Ingress"
        in found["canaryIngressAnnotations.kubernetes.io/ingress.class"]
    )


def test_cookie_in_two_places() -> None:
    found = problems(
        {
            "stableIngress": "app",
            "canaryByCookie": "c",
            "additionalIngressAnnotations": {"canary-by-cookie": "d"},
        }
    )
    assert "set it in one place" in found["canaryByCookie"]


def test_header_value_without_header() -> None:
    found = problems(
        {"stableIngress": "app", "additionalIngressAnnotations": {"canary-by-header-value": "x"}}
    )
    assert "has no effect" in found["additionalIngressAnnotations"]


@pytest.mark.parametrize("value", ["bad cookie", "c;d", "c=d", ""])
def test_cookie_name(value: str) -> None:
    assert "canaryByCookie" in problems({"stableIngress": "app", "canaryByCookie": value})


@pytest.mark.parametrize("value", ["evil; rewrite", "a}", "Host", "$request_uri"])
def test_mirror_host_cannot_inject(value: str) -> None:
    assert "mirrorHost" in problems({"stableIngress": "app", "mirrorHost": value})


@pytest.mark.parametrize("value", ["$host", "app.example.com", "app.example.com:8443"])
def test_mirror_host_accepted(value: str) -> None:
    assert config({"stableIngress": "app", "mirrorHost": value}).section.mirror_host == value


def test_engine_prefixes_section_path() -> None:
    r = routing({"stableIngress": "app", "additionalIngressAnnotations": {"canary": "true"}})
    with pytest.raises(ConfigError) as exc:
        bind(r)
    assert [p.path for p in exc.value.problems] == ["nginx.additionalIngressAnnotations.canary"]


def test_canary_name_short_and_long() -> None:
    assert canary_ingress_name("app") == "app-canary"
    fits = "a" * 246
    assert canary_ingress_name(fits) == fits + "-canary"
    # Truncation lands right after a '.': it must not leave "a.-<hash>" behind.
    long1 = "a" * 236 + ".-" + "b" * 20
    long2 = "a" * 236 + ".-" + "c" * 20
    n1, n2 = canary_ingress_name(long1), canary_ingress_name(long2)
    assert len(n1) <= 253
    assert n1.endswith("-canary")
    assert n1 != n2
    assert n1 == canary_ingress_name(long1)
    assert "-." not in n1
    assert ".-" not in n1
    assert "--" not in n1
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", n1)
