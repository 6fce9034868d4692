"""Build (cached, e2e/traefik/build.sh) and run Traefik against the local API server.

Traefik listens on loopback only: one entry point for traffic, one for ``/ping`` and the API
(``/api/rawdata`` helps when a route does not show up). Providers: ``kubernetesGateway``,
``kubernetesCRD`` (IngressRoute, TraefikService) and ``kubernetesIngressNGINX``, all limited to
the test's namespace and reading the API server through a kubeconfig.

Traefik's defaults wait for a backend's answer forever (``responseHeaderTimeout: 0``) and for a
dial 30 s. Here both are short and explicit (:data:`FORWARDING_TIMEOUTS`), so a backend that
stopped answering shows up as a 504/502 the test counts and retries, never as a request that
hangs until the client gives up.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from e2e.cluster import _pdeathsig, _tail, ensure_built, free_port

BUILD_SH = Path(__file__).resolve().parent / "traefik" / "build.sh"

# Traefik -> test host: a veth to a netns on this machine answers in milliseconds.
FORWARDING_TIMEOUTS = {"dialTimeout": "3s", "responseHeaderTimeout": "5s", "idleConnTimeout": "30s"}
# client -> Traefik (the test's requests): no connection may hang on either side.
RESPONDING_TIMEOUTS = {"readTimeout": "30s", "writeTimeout": "30s", "idleTimeout": "30s"}


def ensure_traefik() -> Path:
    """The Traefik binary (built on a cache miss: minutes; cached: well under a second), or
    the one ``ROUTERS_E2E_TRAEFIK`` names; once per process (``e2e.cluster.ensure_built``)."""
    override = Path(os.environ.get("ROUTERS_E2E_TRAEFIK") or "traefik")
    bin_dir = str(override.parent) if override.is_absolute() else ""
    return ensure_built(BUILD_SH, (override.name,), what="traefik build.sh", bin_dir=bin_dir) / (
        override.name
    )


class Traefik:
    def __init__(
        self, binary: Path, workdir: Path, kubeconfig: Path, namespace: str, ingress_class: str
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.ingress_class = ingress_class
        self.port = free_port()
        self.admin_port = free_port()
        self.log = workdir / "traefik.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def static_config(self) -> dict[str, Any]:
        return {
            "entryPoints": {
                "web": {
                    "address": f"127.0.0.1:{self.port}",
                    "transport": {"respondingTimeouts": RESPONDING_TIMEOUTS},
                },
                "traefik": {
                    "address": f"127.0.0.1:{self.admin_port}",
                    "transport": {"respondingTimeouts": RESPONDING_TIMEOUTS},
                },
            },
            "serversTransport": {"forwardingTimeouts": FORWARDING_TIMEOUTS},
            "ping": {"entryPoint": "traefik"},
            "api": {"insecure": True},
            "log": {"level": "INFO", "filePath": str(self.log)},
            # Which router and service answered each request (a 5xx names its cause).
            "accessLog": {"filePath": str(self.workdir / "access.log"), "format": "json"},
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "providers": {
                "kubernetesGateway": {"namespaces": [self.namespace]},
                "kubernetesCRD": {"namespaces": [self.namespace]},
                "kubernetesIngressNGINX": {
                    "watchNamespace": self.namespace,
                    "ingressClass": self.ingress_class,
                    "httpEntryPoint": "web",
                },
            },
        }

    def start(self, timeout: float = 60.0) -> Traefik:
        config = self.workdir / "traefik.yaml"
        config.write_text(json.dumps(self.static_config(), indent=2))  # JSON is YAML
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with open(self.workdir / "traefik.stdout", "wb") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), f"--configFile={config}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_pdeathsig,  # noqa: PLW1509 - die with the test process
            )
        deadline = time.monotonic() + timeout
        while self.get(self.admin_port, "/ping")[0] != 200:
            if self.proc.poll() is not None:
                raise RuntimeError(f"traefik exited ({self.proc.returncode}):\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"traefik /ping not ready after {timeout}s:\n{self.logs()}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def logs(self, n: int = 60) -> str:
        return _tail(self.log, n) + "\n" + _tail(self.workdir / "traefik.stdout", 20)

    @staticmethod
    def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read().decode(errors="replace")
        except OSError as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def rawdata(self) -> dict[str, Any]:
        status, body = self.get(self.admin_port, "/api/rawdata")
        return json.loads(body) if status == 200 else {}

    def __enter__(self) -> Traefik:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
