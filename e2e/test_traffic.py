"""Real traffic through a real proxy: Traefik v3.7 (built from Go modules) reads the objects the
plugins write to the local API server, and routes requests to two test hosts (stable, canary)
living in a network namespace.

Per step (weights 0 -> 10 -> 50 -> 100, a header route, cleanup), for the Gateway API plugin
(Traefik's ``kubernetesGateway`` provider), the ingress-nginx plugin (its
``kubernetesIngressNGINX`` provider) and the TraefikService plugin (its ``kubernetesCRD``
provider: IngressRoute -> mirroring TraefikService -> weighted TraefikService; no header step,
which a TraefikService cannot express and the plugin refuses):

* the plan is applied through the cluster layer (``routers.cluster.Router``);
* requests are sent through Traefik on loopback until the new split shows (the time from the
  apply to that is printed as the convergence time), then a bounded sample is taken and the
  canary share must lie within 4 binomial standard deviations of the requested weight;
* every request has a timeout; one that times out through the proxy (no answer, or Traefik's
  502/504 for a backend that did not answer) is retried a bounded number of times and counted
  (``e2e/_traffic_client.py``); the counts are printed in the terminal summary, and a used-up
  bound fails the test naming what timed out, never a hang;
* header-matched requests must all reach canary, and after cleanup every request reaches stable;
* the plugin's own data-plane evaluator, run on the objects read back from the API server, must
  predict exactly the requested share, so the evaluator and a real data plane are checked
  against each other.

Mirroring with traffic: through the TraefikService plugin the canary host counts the copies
Traefik mirrors to it (exactly the percentage: Traefik's mirror counter is deterministic).
Traefik implements no Gateway API ``RequestMirror`` (and the nginx provider no ``mirror-*``), so
for those plugins mirroring is verified on the API server and by the evaluator only.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
from kubernetes import config as kube_config

from e2e._report import report
from e2e._traffic_client import TrafficClient, TrafficTimeout, consistent
from e2e._traffic_client import converge as _converge
from e2e._traffic_hosts import PORT, HostsUnavailable, NetnsHosts
from e2e._traffic_traefik import Traefik, ensure_traefik
from e2e.cluster import BinariesUnavailable, ControlPlane
from routers.cluster import Kube, Router, Transport
from routers.contract import evaluator_of
from routers.engine import bind
from routers.errors import UnsupportedError
from routers.model import Cleanup, Desired, RoutingConfig, TrafficState
from routers.planning.objects import LiveObjects
from routers.simulate import Outcome, Request

pytestmark = pytest.mark.e2e

CRDS = ("gateway-standard-v1.6", "traefik")
GW_HOST = "gw.example.com"
NGINX_HOST = "shop.example.com"
TRAEFIK_HOST = "traefik.example.com"
FROZEN_HOST = "frozen.example.com"  # its test host is stopped on purpose (SIGSTOP)
SAMPLE = 400  # requests per weighted step: 4 sigma at 10% is +-24 requests
HEADER_SAMPLE = 60
BATCH = 20  # requests per convergence probe
CONVERGE_TIMEOUT = 60.0
SEND_WITHIN = 120.0  # seconds for one sample (400 requests take ~2 s on a quiet machine)
REQUEST_TIMEOUT = 10.0  # client -> Traefik; Traefik -> backend is 5 s (FORWARDING_TIMEOUTS)
ATTEMPTS = 3  # per request
RETRY_BUDGET = 20  # retried attempts per test, all requests together
SECTION = "traffic through Traefik"
# A walk sends ~3,500 requests: measured 144 s at load average 21 on 2 cores (vs. the 300 s
# default per test), so the walks get more room; a hang still ends well before the old 600 s.
WALK_TIMEOUT = 480


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"traffic test unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"traffic test unavailable: {reason}")


# -- the environment -------------------------------------------------------------------------


@dataclass
class Env:
    cp: ControlPlane
    ns: str
    hosts: NetnsHosts
    traefik: Traefik
    gateway_class: str
    ingress_class: str

    def describe(self) -> str:
        """What a failure message needs: are the test hosts alive, what did Traefik log."""
        return f"{self.hosts.describe()}\n{self.traefik.logs()}"

    def client(self) -> TrafficClient:
        return TrafficClient(
            self.traefik.port,
            timeout=REQUEST_TIMEOUT,
            attempts=ATTEMPTS,
            retry_budget=RETRY_BUDGET,
            describe=self.describe,
        )


def _apply(cp: ControlPlane, *objs: dict[str, Any]) -> None:
    cp.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}),
    )


def _backend_objects(ns: str, hosts: NetnsHosts) -> list[dict[str, Any]]:
    """Selector-less Services plus hand-written EndpointSlices (named ports: Traefik needs them)."""
    out: list[dict[str, Any]] = []
    for name, addr in hosts.addresses.items():
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": PORT}]},
            }
        )
        out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-test-hosts",
                    "namespace": ns,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "canary-routers-e2e",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
            }
        )
    return out


def _traefik_objects(ns: str) -> list[dict[str, Any]]:
    """IngressRoute -> mirroring TraefikService (Argo's argo-mirror-<name>) -> weighted one."""

    def ts(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        meta = {"name": name, "namespace": ns}
        return {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "TraefikService",
            "metadata": meta,
            "spec": spec,
        }

    entries = [{"name": "stable", "port": 80}, {"name": "canary", "port": 80, "weight": 0}]
    return [
        ts("shop", {"weighted": {"services": entries}}),
        ts("argo-mirror-shop", {"mirroring": {"name": "shop", "kind": "TraefikService"}}),
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "IngressRoute",
            "metadata": {"name": "shop", "namespace": ns},
            "spec": {
                "entryPoints": ["web"],
                "routes": [
                    {
                        "match": f"Host(`{TRAEFIK_HOST}`)",
                        "kind": "Rule",
                        "services": [{"name": "argo-mirror-shop", "kind": "TraefikService"}],
                    }
                ],
            },
        },
    ]


@pytest.fixture(scope="module")
def env(
    control_plane: Callable[..., ControlPlane], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    try:
        binary = ensure_traefik()
    except BinariesUnavailable as exc:
        _unavailable(str(exc))
    cp = control_plane(CRDS)
    ns = cp.new_namespace("traffic")
    suffix = ns.rsplit("-", 1)[-1]
    gateway_class, ingress_class = f"traefik-{suffix}", f"nginx-{suffix}"
    with ExitStack() as stack:
        try:
            hosts = stack.enter_context(NetnsHosts(("stable", "canary", "frozen")))
        except HostsUnavailable as exc:
            _unavailable(str(exc))
        stack.callback(
            cp.kubectl,
            "delete",
            "gatewayclass",
            gateway_class,
            "ingressclass",
            ingress_class,
            "--ignore-not-found",
            check=False,
        )
        traefik = Traefik(
            binary, tmp_path_factory.mktemp("traefik"), cp.kubeconfig, ns, ingress_class
        )
        _apply(
            cp,
            *_backend_objects(ns, hosts),
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": gateway_class},
                "spec": {"controllerName": "traefik.io/gateway-controller"},
            },
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "public", "namespace": ns},
                "spec": {
                    "gatewayClassName": gateway_class,
                    # A listener's port must be one of Traefik's entry point ports.
                    "listeners": [{"name": "web", "port": traefik.port, "protocol": "HTTP"}],
                },
            },
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "shop", "namespace": ns},
                "spec": {
                    "parentRefs": [{"name": "public"}],
                    "hostnames": [GW_HOST],
                    "rules": [
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                            "backendRefs": [
                                {"name": "stable", "port": 80, "weight": 100},
                                {"name": "canary", "port": 80, "weight": 0},
                            ],
                        }
                    ],
                },
            },
            *_traefik_objects(ns),
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "frozen", "namespace": ns},
                "spec": {
                    "parentRefs": [{"name": "public"}],
                    "hostnames": [FROZEN_HOST],
                    "rules": [{"backendRefs": [{"name": "frozen", "port": 80}]}],
                },
            },
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": ingress_class},
                "spec": {"controller": "k8s.io/ingress-nginx"},
            },
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "shop", "namespace": ns},
                "spec": {
                    "ingressClassName": ingress_class,
                    "rules": [
                        {
                            "host": NGINX_HOST,
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": "stable", "port": {"name": "http"}}
                                        },
                                    }
                                ]
                            },
                        }
                    ],
                },
            },
        )
        stack.enter_context(traefik)
        yield Env(cp, ns, hosts, traefik, gateway_class, ingress_class)


# -- sending traffic --------------------------------------------------------------------------


def converge(
    client: TrafficClient, host: str, headers: dict[str, str], new: Fraction, old: Fraction
) -> float:
    """Seconds until Traefik shows the new canary share for requests with these headers."""

    def probe(n: int, within: float) -> Counter[str]:
        what = f"convergence probe (canary share {new})"
        return client.send(host, n, headers, within=within, what=what)

    def describe() -> str:
        return f"{client.tally.line()}\n{client.describe()}"

    return _converge(probe, new, old, batch=BATCH, timeout=CONVERGE_TIMEOUT, describe=describe)


# -- the walk -----------------------------------------------------------------------------------

HEADER = {"X-Canary": "always"}
HEADER_STATE = {
    "name": "canary-header",
    "matches": [{"headers": [{"name": "X-Canary", "exact": "always"}]}],
}


def steps() -> list[tuple[str, Desired]]:
    return [
        ("weight 0", TrafficState(weight=0)),
        ("weight 10", TrafficState(weight=10)),
        ("weight 50", TrafficState(weight=50)),
        ("weight 100", TrafficState(weight=100)),
        (
            "header route + weight 10",
            TrafficState.parse({"weight": 10, "headerRoutes": [HEADER_STATE]}),
        ),
        ("cleanup", Cleanup()),
    ]


def expected(desired: Desired, header: bool) -> Fraction:
    if isinstance(desired, Cleanup):
        return Fraction(0)
    if header and desired.header_routes:
        return Fraction(1)
    return Fraction(desired.weight, desired.total)


def kube_for(cp: ControlPlane, user: str = "routers") -> Kube:
    client = kube_config.new_client_from_config(config_file=str(cp.kubeconfig_for(user)))
    return Kube(Transport(client))


def _server_objects(env: Env, kind: str) -> list[dict[str, Any]]:
    out = env.cp.kubectl("get", kind, "-n", env.ns, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def simulate(routing: RoutingConfig, objects: list[dict[str, Any]], req: Request) -> Outcome:
    """What the plugin's own data-plane evaluator says the objects do with ``req``."""
    (binding,) = bind(routing)
    evaluator = evaluator_of(binding.plugin)
    assert evaluator is not None, f"{binding.name} provides no evaluator"
    (routed,) = evaluator.evaluate(binding.config, LiveObjects.from_manifests(objects), req)
    return routed.outcome


def walk(
    env: Env,
    target: str,
    routing: RoutingConfig,
    host: str,
    predict: Callable[[Request], Fraction],
    plan: list[tuple[str, Desired]] | None = None,
) -> None:
    router = Router(routing, kube=kube_for(env.cp))
    with env.client() as client:
        # Traefik has to pick the initial objects up before anything can be measured.
        converge(client, host, {}, Fraction(0), Fraction(0))
        previous: Desired = TrafficState(weight=0)
        for label, desired in plan or steps():
            if isinstance(desired, Cleanup):
                router.cleanup()
            else:
                router.apply_state(desired)
            # Probe with whichever request's expected share changes (header ones first).
            probe_header = expected(desired, True) != expected(previous, True)
            headers = HEADER if probe_header else {}
            new, old = expected(desired, probe_header), expected(previous, probe_header)
            took = converge(client, host, headers, new, old)
            what = f"{target}: {label}: sample"
            counts = client.send(host, SAMPLE, within=SEND_WITHIN, what=what)
            want = expected(desired, header=False)
            observed = counts["canary"] / SAMPLE
            assert counts["stable"] + counts["canary"] == SAMPLE, f"{what}: {dict(counts)}"
            assert consistent(counts["canary"], SAMPLE, want), (
                f"{target}: {label}: canary {counts['canary']}/{SAMPLE}, want {want} (4 sigma)"
            )
            took_text = f"converged in {took:.2f}s" if new != old else "no change to wait for"
            line = f"{target}: {label}: {took_text}; canary {observed:.3f} (want {float(want):.3f})"
            hdr = client.send(
                host, HEADER_SAMPLE, HEADER, within=SEND_WITHIN, what=f"{what} with X-Canary"
            )
            want_hdr = expected(desired, header=True)
            assert consistent(hdr["canary"], HEADER_SAMPLE, want_hdr), (
                f"{target}: {label}: header {dict(hdr)}"
            )
            line += f"; with X-Canary: always {hdr['canary']}/{HEADER_SAMPLE} canary"
            # The evaluator, on what the API server holds, must predict exactly what was asked.
            for req, w in (
                (Request(headers=(("Host", host),)), want),
                (Request(headers=(("Host", host), ("X-Canary", "always"))), want_hdr),
            ):
                assert predict(req) == w, (
                    f"{target}: {label}: simulator predicts {predict(req)} for {req}, want {w}"
                )
            report(SECTION, line)
            previous = desired
        final = client.send(host, SAMPLE, within=SEND_WITHIN, what=f"{target}: after cleanup")
        assert final == Counter({"stable": SAMPLE}), (
            f"{target}: traffic left on canary after cleanup"
        )
        report(SECTION, f"{target}: {client.tally.line()}")


def _routing(ns: str, section: dict[str, Any]) -> RoutingConfig:
    return RoutingConfig.from_document(
        {
            "stableService": "stable",
            "canaryService": "canary",
            "namespace": ns,
            "managedRoutes": [{"name": "canary-header"}, {"name": "canary-mirror"}],
            "trafficRouting": section,
        }
    )


@pytest.mark.timeout(WALK_TIMEOUT)
def test_gateway_api_through_traefik(env: Env) -> None:
    routing = _routing(env.ns, {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "shop"}}})

    def predict(req: Request) -> Fraction:
        routes = _server_objects(env, "httproutes.gateway.networking.k8s.io")
        return simulate(routing, routes, req).share("canary")

    walk(env, "gatewayapi", routing, GW_HOST, predict)


@pytest.mark.timeout(WALK_TIMEOUT)
def test_ingress_nginx_through_traefik(env: Env) -> None:
    routing = _routing(env.ns, {"nginx": {"stableIngress": "shop"}})

    def predict(req: Request) -> Fraction:
        ingresses = _server_objects(env, "ingresses.networking.k8s.io")
        return simulate(routing, ingresses, req).share("canary")

    walk(env, "nginx", routing, NGINX_HOST, predict)


def test_request_mirror_is_verified_without_traffic(env: Env) -> None:
    """Traefik has no RequestMirror: the API server and the evaluator are the only witnesses."""
    routing = _routing(env.ns, {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "shop"}}})
    router = Router(routing, kube=kube_for(env.cp))
    state = TrafficState.parse(
        {
            "weight": 10,
            "mirrorRoutes": [
                {
                    "name": "canary-mirror",
                    "percentage": 25,
                    "matches": [{"path": {"prefix": "/mirrored"}}],
                }
            ],
        }
    )
    try:
        router.apply_state(state)
        assert router.verify(state).ok
        routes = _server_objects(env, "httproutes.gateway.networking.k8s.io")
        out = simulate(routing, routes, Request(path="/mirrored/x", headers=(("Host", GW_HOST),)))
        assert out.mirror("canary") == Fraction(1, 4)
        assert out.share("canary") == Fraction(1, 10)
        report(
            SECTION,
            "gatewayapi: RequestMirror 25% accepted by the API server; evaluated, not sent "
            "(Traefik lacks it)",
        )
    finally:
        router.cleanup()
    with env.client() as client:
        converge(client, GW_HOST, {}, Fraction(0), Fraction(0))
        report(SECTION, f"gatewayapi (mirror test): {client.tally.line()}")


TRAEFIK_ROUTING = {"traefik": {"weightedTraefikServiceName": "shop"}}
MIRROR_STATE = {
    "name": "canary-mirror",
    "percentage": 50,
    "matches": [{"path": {"prefix": "/"}}],
}


@pytest.mark.timeout(WALK_TIMEOUT)
def test_traefikservice_through_traefik(env: Env) -> None:
    """The fifth plugin: weights on the TraefikService behind an IngressRoute (kubernetesCRD).
    A TraefikService matches no headers, so the walk has no header-route step (refused)."""
    routing = _routing(env.ns, TRAEFIK_ROUTING)
    with pytest.raises(UnsupportedError, match="header-based routing"):
        Router(routing, kube=kube_for(env.cp)).apply_state(steps()[4][1])

    def predict(req: Request) -> Fraction:
        services = _server_objects(env, "traefikservices.traefik.io")
        return simulate(routing, services, req).share("canary")

    plan = [s for s in steps() if not (isinstance(s[1], TrafficState) and s[1].header_routes)]
    walk(env, "traefik", routing, TRAEFIK_HOST, predict, plan)


def _copies(env: Env, path: str, want: int) -> int:
    """Mirrored copies the canary host received for ``path`` once they stop arriving."""
    deadline, last, stable_since = time.monotonic() + 10, -1, time.monotonic()
    while time.monotonic() < deadline:
        got = env.hosts.seen("canary", path)
        if got != last:
            last, stable_since = got, time.monotonic()
        elif got >= want or time.monotonic() - stable_since > 1.0:
            break
        time.sleep(0.1)
    return last


def test_traefik_mirror_copies_requests(env: Env) -> None:
    """Real mirroring: Traefik copies exactly the percentage to the canary host (its mirror
    counter is deterministic), while weight 0 keeps every answer on stable."""
    routing = _routing(env.ns, TRAEFIK_ROUTING)
    router = Router(routing, kube=kube_for(env.cp))
    state = TrafficState.parse({"weight": 0, "mirrorRoutes": [MIRROR_STATE]})
    client = env.client()
    try:
        router.apply_state(state)
        assert router.verify(state).ok
        start = time.monotonic()
        while env.hosts.seen("canary", "/probe") == 0:  # Traefik picked the mirror up
            client.send(TRAEFIK_HOST, BATCH, path="/probe", within=SEND_WITHIN, what="probe")
            assert time.monotonic() - start < CONVERGE_TIMEOUT, env.describe()
        took = time.monotonic() - start
        n = 200
        answers = client.send(
            TRAEFIK_HOST, n, path="/mirrored", within=SEND_WITHIN, what="mirrored"
        )
        copies = _copies(env, "/mirrored", n // 2)
        assert answers == Counter({"stable": n}), answers
        # Any n consecutive requests: n * 50 / 100 copies, +-1 for where the counter stood.
        assert abs(copies - n // 2) <= 1, f"{copies} copies of {n} requests at 50%"
        services = _server_objects(env, "traefikservices.traefik.io")
        predicted = simulate(routing, services, Request(headers=(("Host", TRAEFIK_HOST),)))
        assert predicted.mirror("canary") == Fraction(1, 2)
        report(
            SECTION,
            f"traefik: mirror 50% converged in {took:.2f}s; {copies}/{n} requests copied to "
            f"canary, {answers['stable']}/{n} answered by stable; evaluator predicts 1/2",
        )
    finally:
        router.cleanup()
    converge(client, TRAEFIK_HOST, {}, Fraction(0), Fraction(0))
    client.send(TRAEFIK_HOST, 40, path="/after-cleanup", within=SEND_WITHIN, what="after cleanup")
    assert _copies(env, "/after-cleanup", 0) == 0, "still mirroring after cleanup"
    report(SECTION, f"traefik (mirror test): {client.tally.line()}")
    client.close()


def test_a_backend_that_stops_answering_fails_fast_and_says_so(env: Env) -> None:
    """The Traefik 'hang' as it would look if a test host stopped answering mid-walk: a stopped
    process still has its socket, so the kernel accepts and nobody answers. Traefik gives up
    after its responseHeaderTimeout (504), the client retries a bounded number of times, counts,
    and fails naming the request, the 504s and the stopped host, in seconds, not at a test
    timeout."""
    with env.client() as client:
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while client.get(FROZEN_HOST) != "frozen":  # Traefik picks the route up
            assert time.monotonic() < deadline, f"no route to the frozen host\n{env.describe()}"
            time.sleep(0.2)
    host = env.hosts.freeze("frozen")
    answers: list[str] = []
    try:
        client = TrafficClient(
            env.traefik.port,
            timeout=REQUEST_TIMEOUT,
            attempts=2,
            retry_budget=5,
            describe=env.describe,
        )
        start = time.monotonic()

        def three() -> None:
            for _ in range(3):
                answers.append(client.get(FROZEN_HOST))

        with pytest.raises(TrafficTimeout) as info:
            three()
        took = time.monotonic() - start
        client.close()
    finally:
        host.send_signal(signal.SIGCONT)
    message = str(info.value)
    assert f"GET http://{FROZEN_HOST}/" in message
    assert "failed 2 times in a row" in message
    assert "HTTP 504 from the proxy" in message  # Traefik's forwarding timeout, not a hang
    assert "frozen 198.18." in message and "STOPPED" in message
    # A cold CI run once saw one answer here (SIGSTOP not yet in effect): the host is now
    # stopped before the first request, and any answer is named.
    tally = (client.tally.gateway, client.tally.retries, client.tally.answered)
    assert tally == (2, 1, 0), f"answers from a stopped host's route: {answers}"
    # two attempts, each bounded by Traefik's 5 s responseHeaderTimeout (plus a busy machine)
    assert took < 2 * REQUEST_TIMEOUT + 10, took
    report(SECTION, f"frozen backend: failed after {took:.1f}s: {client.tally.line()}")
