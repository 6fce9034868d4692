"""Step latency: one canary step through the watch cache vs one raw PATCH of the same bytes.

One rollout, one step at a time. Our step is what a controller waits for: ``Router.apply_state``
(plan from the watch cache, one guarded JSON patch, the response into the cache) and then
``Router.verify`` (from the cache). The raw PATCH is the physical limit of that step: the exact
method, query and body our step just sent, serialised beforehand, sent to a twin object (the
same content in another namespace; only its resourceVersion guard differs) through the same
client's connection pool, the response read in full but not parsed. The two alternate, step by
step, so a change in the machine's load hits both. Client CPU is the process time per step (the
watch thread that decodes our own write's event included).
"""

from __future__ import annotations

import json
import time
from statistics import median
from typing import Any

import urllib3

from bench.cluster import Capture, client, seed
from bench.scenarios import SPECS
from bench.stats import percentile
from e2e.cluster import ControlPlane
from routers.cluster import Kube, Router, Transport, WatchCache
from routers.model import RoutingConfig, TrafficState
from routers.planning.patch import RV_GUARD
from routers.registry import Registry

__all__ = ["run"]

WARMUP = 5


def _weights(samples: int) -> list[int]:
    """10..100 and back down to 0, repeated: every step changes the weight."""
    cycle = [*range(10, 101, 10), *range(90, -1, -10)]
    return [cycle[i % len(cycle)] for i in range(samples)]


def measure(cp: ControlPlane, plugin: str, registry: Registry, samples: int) -> dict[str, Any]:
    scenario = SPECS[plugin].api[0]
    api = client(cp, pool=4)
    kube = Kube(Transport(api))
    ours_ns, twin_ns = cp.new_namespace("bench-lat"), cp.new_namespace("bench-lat")
    seed(cp, kube, scenario, ours_ns)
    seed(cp, kube, scenario, twin_ns)
    capture = Capture(kube.transport)
    config = RoutingConfig.from_document(scenario.with_namespace(ours_ns).routing)
    weights = _weights(WARMUP + samples)
    # The twin goes through the warm-up steps too (nginx creates its canary Ingress there).
    twin_router = Router(
        RoutingConfig.from_document(scenario.with_namespace(twin_ns).routing),
        kube=Kube(Transport(api)),
        registry=registry,
    )
    for w in weights[:WARMUP]:
        twin_router.apply_state(TrafficState(weight=w))
    twin_rv: dict[str, str] = {
        ref.name: str(obj["metadata"]["resourceVersion"]) for ref, obj in twin_router.read().items()
    }
    pool = api.rest_client.pool_manager
    timeout = urllib3.Timeout(connect=30, read=60)
    ours_s: list[float] = []
    raw_s: list[float] = []
    ours_cpu: list[float] = []
    raw_cpu: list[float] = []
    request_bytes: list[int] = []
    response_bytes: list[int] = []
    unverified = 0
    with WatchCache(kube) as cache:
        router = Router(config, cache=cache, registry=registry)
        router.facts()
        for i, w in enumerate(weights):
            state = TrafficState(weight=w)
            mark = len(capture.sent)
            c0, t0 = time.process_time(), time.perf_counter()
            router.apply_state(state)
            ok = router.verify(state).ok
            t1, c1 = time.perf_counter(), time.process_time()
            unverified += not ok and i >= WARMUP
            patches = [s for s in capture.sent[mark:] if s[0] == "PATCH"]
            others = [s for s in capture.sent[mark:] if s[0] != "PATCH"]
            if i < WARMUP:
                continue  # creates (nginx's canary Ingress), the first list, discovery
            if len(patches) != 1 or others:
                raise RuntimeError(
                    f"{plugin}: a steady step sent {[(s[0], s[1]) for s in capture.sent[mark:]]}"
                )
            _, path, query, ops = patches[0]
            name = path.rsplit("/", 1)[1]
            sent = [
                {**op, "value": twin_rv[name]}
                if op["op"] == "test" and op["path"] == RV_GUARD
                else op
                for op in ops
            ]
            body = json.dumps(sent).encode()
            _, url, headers, _, _ = api.param_serialize(
                "PATCH",
                path.replace(f"/namespaces/{ours_ns}/", f"/namespaces/{twin_ns}/"),
                query_params=query,
                header_params={
                    "Accept": "application/json",
                    "Content-Type": "application/json-patch+json",
                },
                auth_settings=["BearerToken"],
            )
            c2, t2 = time.process_time(), time.perf_counter()
            resp = pool.request(
                "PATCH", url, body=body, headers=headers, timeout=timeout, preload_content=False
            )
            data = resp.read()
            t3, c3 = time.perf_counter(), time.process_time()
            resp.release_conn()
            if resp.status != 200:
                raise RuntimeError(f"{plugin}: raw PATCH answered {resp.status}: {data[:300]!r}")
            twin_rv[name] = str(json.loads(data)["metadata"]["resourceVersion"])
            ours_s.append(t1 - t0)
            raw_s.append(t3 - t2)
            ours_cpu.append(c1 - c0)
            raw_cpu.append(c3 - c2)
            request_bytes.append(len(body))
            response_bytes.append(len(data))
        stats = cache.stats()
    api.close()  # type: ignore[no-untyped-call]

    def ms(values: list[float], q: float | None = None) -> float:
        v = median(values) if q is None else percentile(values, q)
        return round(v * 1e3, 2)

    ours_p50, raw_p50 = ms(ours_s), ms(raw_s)
    ours_p99, raw_p99 = ms(ours_s, 99), ms(raw_s, 99)
    return {
        "plugin": plugin,
        "object": scenario.label,
        "samples": len(ours_s),
        "oursP50Ms": ours_p50,
        "oursP99Ms": ours_p99,
        "rawP50Ms": raw_p50,
        "rawP99Ms": raw_p99,
        "ratioP50": round(ours_p50 / raw_p50, 2) if raw_p50 else None,
        "ratioP99": round(ours_p99 / raw_p99, 2) if raw_p99 else None,
        "oursCpuMs": ms(ours_cpu),
        "rawCpuMs": ms(raw_cpu),
        "patchBytes": round(median(request_bytes)),
        "responseBytes": round(median(response_bytes)),
        "cacheGets": stats.gets,
        "unverifiedSteps": unverified,
    }


def run(
    cp: ControlPlane, registry: Registry, plugins: list[str], samples: int = 200
) -> dict[str, Any]:
    return {"rows": [measure(cp, p, registry, samples) for p in plugins], "samples": samples}
