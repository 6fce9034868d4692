"""Names and values are full matches (issue 13, part 2): nothing with a trailing newline passes.

``re.match(r"^...$")`` accepts ``"web-canary\\n"`` because ``$`` also matches before a final
newline. Every rule now lives in ``routers.model._validators`` and is applied with
``fullmatch``; a source scan keeps anchored patterns from coming back.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from routers.cli import main
from routers.engine import bind
from routers.errors import ConfigError
from routers.model import RoutingConfig, TrafficState
from routers.model import _validators as v
from routers.registry import Registry

ROOT = Path(__file__).resolve().parents[2]

# Every annotated type of the validator module, with one value it accepts.
TYPES: dict[str, tuple[Any, str]] = {
    "HeaderName": (v.HeaderName, "X-Canary"),
    "RouteName": (v.RouteName, "shadow"),
    "ObjectName": (v.ObjectName, "web.v2"),
    "ServiceName": (v.ServiceName, "web-canary"),
    "Namespace": (v.Namespace, "shop"),
    "DnsSubdomain": (v.DnsSubdomain, "cluster.local"),
    "LabelKey": (v.LabelKey, "example.com/pod-template-hash"),
    "LabelValue": (v.LabelValue, "5f7d9c"),
    "PodTemplateHash": (v.PodTemplateHash, "5f7d9c"),
    "ConfigMapKey": (v.ConfigMapKey, "weights.json"),
    "ReleaseVersion": (v.ReleaseVersion, "v1.2.1"),
    "MatchValue": (v.MatchValue, "always"),
    "PathValue": (v.PathValue, "/api"),
    "OwnerName": (v.OwnerName, "team-a/checkout"),
    "FreeName": (v.FreeName, "primary route"),
    "Uid": (v.Uid, "3c1d2f0e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"),
    "Regex": (v.Regex, "^a|b$"),
}


def test_every_exported_type_is_covered() -> None:
    exported = {n for n in v.__all__ if n[0].isupper()}
    assert exported == set(TYPES)


@pytest.mark.parametrize("name", sorted(TYPES))
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\r", "\x00", "\u2028"])
def test_no_type_accepts_a_trailing_line_break(name: str, suffix: str) -> None:
    kind, good = TYPES[name]
    adapter = TypeAdapter(kind)
    assert adapter.validate_python(good) == good
    with pytest.raises(ValidationError):
        adapter.validate_python(good + suffix)
    with pytest.raises(ValidationError):
        adapter.validate_python(suffix + good)


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (v.is_dns_label, "shop", ["shop\n", "Shop", "a" * 64, "-a", "a.b"]),
        (v.is_dns_subdomain, "a.b-c", ["a.b\n", "a..b", "a" * 254, ".a"]),
        (v.is_qualified_key, "a.io/b_c", ["a.io/b\n", "/b", "A.io/b", "a/b/c", "b" * 64]),
        (v.is_label_value, "a_b.c", ["a\n", "-a", "a" * 64]),
        (v.is_path_segment_name, "Web:v1", ["web\n", "a/b", "a%2F", ".", "..", "", "a" * 254]),
        (v.is_host_port, "a.example.com:8443", ["a.com\n", "a.com:0", "a.com:65536", "a:"]),
        (v.is_field_value, "a b", ["a\n", " a", "a ", "a  b"]),
    ],
)
def test_predicates_are_full_matches(check: Any, good: str, bad: list[str]) -> None:
    assert check(good)
    for value in bad:
        assert not check(value), value


def test_pydantic_pattern_semantics_we_avoid() -> None:
    """Why no model uses ``Field(pattern=...)``: pydantic-core's Rust engine anchors ``$`` at the
    very end, but the Python engine (a compiled pattern, or ``regex_engine="python-re"``) lets a
    trailing newline through. Pinned so an upgrade that changes either shows up here."""

    class Rust(BaseModel):
        x: Annotated[str, Field(pattern=r"^[a-z]+$")]

    class Python(BaseModel):
        model_config = ConfigDict(regex_engine="python-re")
        x: Annotated[str, Field(pattern=r"^[a-z]+$")]

    class Compiled(BaseModel):
        x: Annotated[str, Field(pattern=re.compile(r"^[a-z]+$"))]

    with pytest.raises(ValidationError):
        Rust(x="abc\n")
    assert Python(x="abc\n").x == "abc\n"
    assert Compiled(x="abc\n").x == "abc\n"


# -- the examples of the issue ------------------------------------------------------------------

ROUTING = {"stableService": "web-stable", "canaryService": "web-canary"}


def test_mirror_route_name_with_trailing_newline_is_refused() -> None:
    doc = {"mirrorRoutes": [{"name": "shadow\n", "matches": [{"method": "GET"}]}]}
    with pytest.raises(ConfigError) as info:
        TrafficState.parse(doc)
    assert [p.path for p in info.value.problems] == ["mirrorRoutes[0].name"]
    assert "'shadow\\n' is not a DNS-1123 label" in str(info.value)


def test_canary_service_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        RoutingConfig.from_document({**ROUTING, "canaryService": "web-canary\n"})
    assert [p.path for p in info.value.problems] == ["canaryService"]
    assert "is not a valid Service name" in str(info.value)


def test_namespace_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        RoutingConfig.from_document({**ROUTING, "namespace": "shop\n"})
    assert [p.path for p in info.value.problems] == ["namespace"]


def test_rollout_namespace_with_trailing_newline_is_refused() -> None:
    rollout = {
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop\n"},
        "spec": {"strategy": {"canary": {**ROUTING, "trafficRouting": {"istio": {}}}}},
    }
    with pytest.raises(ConfigError) as info:
        RoutingConfig.from_document(rollout)
    assert "namespace" in {p.path for p in info.value.problems}


@pytest.mark.parametrize("service", ["web.other-ns", "web.other-ns.svc.cluster.local", "1web"])
def test_service_names_are_dns_1035_labels(service: str) -> None:
    """A dotted "Service" would become the Istio host ``web.other-ns``: another namespace's
    Service would receive the canary share."""
    with pytest.raises(ConfigError):
        RoutingConfig.from_document({**ROUTING, "canaryService": service})
    with pytest.raises(ConfigError):
        TrafficState.parse(
            {"weight": 1, "additionalDestinations": [{"service": service, "weight": 1}]}
        )


def test_pod_template_hash_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        TrafficState.parse({"weight": 1, "canaryHash": "5f7d9c\n"})
    assert [p.path for p in info.value.problems] == ["canaryHash"]


def test_cli_namespace_flag_is_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-n`` replaced the validated namespace with whatever it was given."""
    config = tmp_path / "routing.yaml"
    config.write_text("stableService: a\ncanaryService: b\nistio: {virtualService: {name: vs}}\n")
    state = tmp_path / "state.yaml"
    state.write_text("weight: 1\n")
    live = tmp_path / "live.yaml"
    live.write_text("")
    args = ["plan", "--config", str(config), "--state", str(state), "-f", str(live)]
    assert main([*args, "-n", "shop\n"]) == 1
    assert "'shop\\n' is not a valid namespace" in capsys.readouterr().err


# -- no anchored pattern comes back ---------------------------------------------------------------

SCANNED = [
    ROOT / "routers",
    *sorted((ROOT / "plugins").glob("*/routers_*")),
    ROOT / "tests" / "fixtures" / "thirdparty",
    ROOT / "examples",
]
_RE_FUNCS = {"compile", "match", "search", "fullmatch"}


def _anchored_patterns(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        literal: ast.expr | None = None
        if (
            isinstance(func, ast.Attribute)
            and func.attr in _RE_FUNCS
            and isinstance(func.value, ast.Name)
            and func.value.id in ("re", "re2")
            and node.args
        ):
            literal = node.args[0]
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name == "Field" and any(kw.arg == "pattern" for kw in node.keywords):
            found.append((node.lineno, "Field(pattern=...): use routers.model._validators"))
        parts = (
            [literal]
            if isinstance(literal, ast.Constant)
            else [p for p in ast.walk(literal) if isinstance(p, ast.Constant)]
            if literal is not None
            else []
        )
        text = "".join(p.value for p in parts if isinstance(p.value, str))
        if text.endswith("$") and not text.endswith("\\$"):
            found.append((node.lineno, text))
    return found


def test_no_dollar_anchored_pattern_anywhere() -> None:
    """Patterns are written without ^/$ and used with fullmatch; pydantic's pattern= is out."""
    offenders = []
    files = [f for base in SCANNED for f in sorted(base.rglob("*.py"))]
    assert len(files) > 40
    for path in files:
        for line, text in _anchored_patterns(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {text}")
    assert not offenders, "\n".join(offenders)


def test_scan_finds_what_it_looks_for() -> None:
    tree = ast.parse(
        'import re\nA = re.compile(r"^a$")\nB = re.match("(" "b)$", x)\n'
        "C = Annotated[str, Field(pattern=r'^c')]\nD = re.compile(r'd')\n"
    )
    assert [line for line, _ in _anchored_patterns(tree)] == [2, 3, 4]


# -- every plugin config field that becomes a name, host or annotation ----------------------------

DR = {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"}
GW = "argoproj-labs/gatewayAPI"
PLUGIN_FIELDS = [
    ({"istio": {"virtualService": {"name": "web\n"}}}, "istio.virtualService.name"),
    (
        {"istio": {"virtualService": {"name": "web", "delegate": "inner\n"}}},
        "istio.virtualService.delegate",
    ),
    (
        {"istio": {"virtualService": {"name": "w"}, "destinationRule": {**DR, "name": "web\n"}}},
        "istio.destinationRule.name",
    ),
    (
        {
            "istio": {
                "virtualService": {"name": "web"},
                "destinationRule": {**DR, "canarySubsetName": "canary\n"},
            }
        },
        "istio.destinationRule.canarySubsetName",
    ),
    (
        {"istio": {"virtualService": {"name": "web"}, "podTemplateHashKey": "hash\n"}},
        "istio.podTemplateHashKey",
    ),
    (
        {"istio": {"virtualService": {"name": "w", "routes": ["primary\n"]}}},
        "istio.virtualService.routes[0]",
    ),
    ({"plugins": {GW: {"httpRoute": "web\n"}}}, f"plugins.{GW}.httpRoute"),
    (
        {"plugins": {GW: {"httpRouteSelector": {"matchLabels": {"app": "web\n"}}}}},
        f"plugins.{GW}.httpRouteSelector.matchLabels.app",
    ),
    ({"traefik": {"weightedTraefikServiceName": "web\n"}}, "traefik.weightedTraefikServiceName"),
    (
        {"traefik": {"weightedTraefikServiceName": "w", "mirrorTraefikServiceName": "m\n"}},
        "traefik.mirrorTraefikServiceName",
    ),
    ({"plugins": {GW: {"grpcRoutes": [{"name": "g\n"}]}}}, f"plugins.{GW}.grpcRoutes[0].name"),
    ({"plugins": {GW: {"httpRoute": "web", "namespace": "shop\n"}}}, f"plugins.{GW}.namespace"),
    (
        {"plugins": {GW: {"httpRoute": "web", "crdBundleVersion": "v1.2.1\n"}}},
        f"plugins.{GW}.crdBundleVersion",
    ),
    ({"smi": {"trafficSplitName": "split\n"}}, "smi.trafficSplitName"),
    ({"smi": {"trafficSplitName": "s", "rootService": "web\n"}}, "smi.rootService"),
    ({"smi": {"trafficSplitName": "s", "rootService": "web.other"}}, "smi.rootService"),
    ({"smi": {"trafficSplitName": "s", "httpRouteGroupName": "g\n"}}, "smi.httpRouteGroupName"),
    ({"nginx": {"stableIngress": "shop\n"}}, "nginx.stableIngress"),
    ({"nginx": {"stableIngresses": ["a", "shop\n"]}}, "nginx.stableIngresses[1]"),
    (
        {"nginx": {"stableIngress": "shop", "annotationPrefix": "nginx.ingress.kubernetes.io\n"}},
        "nginx.annotationPrefix",
    ),
    ({"nginx": {"stableIngress": "shop", "clusterDomain": "local\n"}}, "nginx.clusterDomain"),
    ({"nginx": {"stableIngress": "shop", "canaryByCookie": "beta\n"}}, "nginx.canaryByCookie"),
    (
        {"nginx": {"stableIngress": "shop", "mirrorHost": "canary.example.com\n"}},
        "nginx.mirrorHost",
    ),
    (
        {"nginx": {"stableIngress": "s", "additionalIngressAnnotations": {"load-balance\n": "x"}}},
        "nginx.additionalIngressAnnotations.load-balance\n",
    ),
    (
        {"nginx": {"stableIngress": "s", "allowUnsafeAnnotations": ["server-snippet\n"]}},
        "nginx.allowUnsafeAnnotations[0]",
    ),
]


@pytest.mark.parametrize(
    ("sections", "path"), PLUGIN_FIELDS, ids=[path for _, path in PLUGIN_FIELDS]
)
def test_plugin_names_with_trailing_newline_are_refused(
    sections: dict[str, Any], path: str
) -> None:
    config = RoutingConfig.from_document(
        {"stableService": "web-stable", "canaryService": "web-canary", **sections}
    )
    with pytest.raises(ConfigError) as info:
        bind(config)
    assert path in [p.path for p in info.value.problems], info.value.problems


@pytest.mark.parametrize(
    ("section", "path"),
    [({"configMap": "cm\n"}, "configMap"), ({"configMap": "cm", "key": "k\n"}, "key")],
)
def test_thirdparty_fixture_validates_its_names(
    cm_registry: Registry, section: dict[str, Any], path: str
) -> None:
    config = RoutingConfig.from_document({**ROUTING, "plugins": {"x/configmap": section}})
    with pytest.raises(ConfigError) as info:
        bind(config, cm_registry)
    assert [p.path for p in info.value.problems] == [f"plugins.x/configmap.{path}"]


@pytest.mark.parametrize(
    ("rollout", "path"),
    [
        ({"kind": "Rollout", "spec": True}, "spec"),
        ({"kind": "Rollout", "spec": {"strategy": [1]}}, "spec.strategy"),
        ({"kind": "Rollout", "spec": {"strategy": {"canary": "x"}}}, "spec.strategy.canary"),
        (
            {
                "kind": "Rollout",
                "metadata": True,
                "spec": {"strategy": {"canary": {**ROUTING, "trafficRouting": {"istio": {}}}}},
            },
            "metadata",
        ),
    ],
)
def test_malformed_rollout_is_a_config_error(rollout: dict[str, Any], path: str) -> None:
    """Found by the fuzz campaign: a Rollout whose parts are not mappings crashed."""
    with pytest.raises(ConfigError) as info:
        RoutingConfig.from_document(rollout)
    assert [p.path for p in info.value.problems] == [path]
