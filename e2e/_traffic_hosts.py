"""Backend test hosts in a network namespace, reachable from the root namespace over a veth.

The API server refuses loopback addresses in EndpointSlices, so the backends Traefik routes to
live on 198.18.0.0/15 (the benchmarking range, never routed) inside a namespace this test
creates and always deletes. Everything here needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVER = Path(__file__).with_name("_traffic_server.py")
PORT = 8080


class HostsUnavailable(RuntimeError):
    """No root / no iproute2: the traffic test cannot run here."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


@dataclass
class NetnsHosts:
    """One netns with one address per backend name; ``stop()`` removes everything."""

    names: tuple[str, ...]
    netns: str = field(default_factory=lambda: f"crt-{secrets.token_hex(3)}")
    addresses: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _veth: str = ""

    def start(self) -> NetnsHosts:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise HostsUnavailable("needs root and iproute2 (ip netns, veth)")
        subnet = f"198.18.{secrets.randbelow(250) + 1}"
        self._veth = f"crt{secrets.token_hex(3)}"
        try:
            _ip("netns", "add", self.netns)
            _ip("link", "add", f"{self._veth}h", "type", "veth", "peer", "name", f"{self._veth}n")
            _ip("link", "set", f"{self._veth}n", "netns", self.netns)
            _ip("addr", "add", f"{subnet}.1/24", "dev", f"{self._veth}h")
            _ip("link", "set", f"{self._veth}h", "up")
            _ip("-n", self.netns, "link", "set", "lo", "up")
            _ip("-n", self.netns, "link", "set", f"{self._veth}n", "up")
            for i, name in enumerate(self.names, start=2):
                addr = f"{subnet}.{i}"
                _ip("-n", self.netns, "addr", "add", f"{addr}/24", "dev", f"{self._veth}n")
                self.addresses[name] = addr
                self.procs.append(
                    subprocess.Popen(
                        [
                            "ip",
                            "netns",
                            "exec",
                            self.netns,
                            sys.executable,
                            str(SERVER),
                            f"{addr}:{PORT}",
                            name,
                            "--max-seconds",
                            "900",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            for name, addr in self.addresses.items():
                self._wait(name, addr)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, name: str, addr: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://{addr}:{PORT}/", timeout=2) as r:
                    if r.read().decode() == name:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"test host {name} at {addr}:{PORT} did not answer")
            time.sleep(0.1)

    def seen(self, name: str, path: str) -> int:
        """How many requests for ``path`` host ``name`` has served (mirrored copies included)."""
        url = f"http://{self.addresses[name]}:{PORT}/__seen?path={path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.read().decode())

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        self.procs.clear()
        subprocess.run(["ip", "link", "del", f"{self._veth}h"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)

    def __enter__(self) -> NetnsHosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
