"""Traffic simulation: what a data plane does with one request, given the objects it reads.

Pure and exact (shares are Fractions, nothing is sampled): evaluators take plain object dicts
(the result of a plan, or anything read from a cluster) and return an
:class:`~routers.simulate.outcome.Outcome` per destination. :func:`intended` gives what a
:class:`~routers.model.TrafficState` means for the same request, so tests (and ``routers explain
--request``) can check that every target's objects do what the state asked, with each data
plane's own precedence rules rather than ours.
"""

from routers.simulate.explain import explain_requests, wanted
from routers.simulate.gatewayapi import backend_label, simulate_grpc_routes, simulate_http_routes
from routers.simulate.istio import destination_label, simulate_virtual_service
from routers.simulate.meaning import Intent, intended, match_applies, split_outcome
from routers.simulate.nginx import simulate_ingress_nginx
from routers.simulate.outcome import Outcome
from routers.simulate.request import Request, parse_request
from routers.simulate.smi import simulate_traffic_split
from routers.simulate.targets import Simulated, simulate_objects

__all__ = [
    "Intent",
    "Outcome",
    "Request",
    "Simulated",
    "backend_label",
    "destination_label",
    "explain_requests",
    "intended",
    "match_applies",
    "parse_request",
    "simulate_grpc_routes",
    "simulate_http_routes",
    "simulate_ingress_nginx",
    "simulate_objects",
    "simulate_traffic_split",
    "simulate_virtual_service",
    "split_outcome",
    "wanted",
]
