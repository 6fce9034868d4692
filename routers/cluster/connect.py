"""Connecting to the API server the way a controller's sidecar process should.

An explicit kubeconfig (flag or ``KUBECONFIG``) wins; inside a Pod without one, the Pod's
service account (in-cluster config); otherwise ``~/.kube/config``, as kubectl does.
"""

from __future__ import annotations

import os

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from routers.cluster._kube import Kube
from routers.cluster._transport import DEFAULT_TIMEOUTS, Timeouts, Transport

__all__ = ["connect"]


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> Kube:
    """A :class:`Kube` on the cluster this process should talk to; every request is bounded
    by ``timeouts``."""
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        conf = Configuration()
        kube_config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
        client = ApiClient(conf)
    else:
        client = kube_config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    return Kube(Transport(client, timeouts=timeouts))
