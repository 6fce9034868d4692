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
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _wait_http(name: str, addr: str, timeout: float = 20.0) -> None:
    """Until http://addr:PORT/ answers with ``name``."""
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


def _link(netns: str, veth: str) -> None:
    """A new netns joined to the root namespace by the veth pair ``<veth>h`` / ``<veth>n``."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise HostsUnavailable("needs root and iproute2 (ip netns, veth)")
    _ip("netns", "add", netns)
    _ip("link", "add", f"{veth}h", "type", "veth", "peer", "name", f"{veth}n")
    _ip("link", "set", f"{veth}n", "netns", netns)
    _ip("-n", netns, "link", "set", "lo", "up")


def _unlink(netns: str, veth: str, procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the servers, delete the veth pair and the netns (each step bounded)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    procs.clear()
    for cmd in (("link", "del", f"{veth}h"), ("netns", "del", netns)):
        subprocess.run(["ip", *cmd], capture_output=True, check=False, timeout=30)


def _serve(netns: str, listen: str, name: str, *extra: str) -> subprocess.Popen[bytes]:
    """The test server inside ``netns`` (it stops by itself after its --max-seconds)."""
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, str(SERVER), listen, name, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@dataclass
class NetnsHosts:
    """One netns with one address per backend name; ``stop()`` removes everything."""

    names: tuple[str, ...]
    netns: str = field(default_factory=lambda: f"crt-{secrets.token_hex(3)}")
    addresses: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _veth: str = ""

    def start(self) -> NetnsHosts:
        subnet = f"198.18.{secrets.randbelow(250) + 1}"
        self._veth = f"crt{secrets.token_hex(3)}"
        try:
            _link(self.netns, self._veth)
            _ip("addr", "add", f"{subnet}.1/24", "dev", f"{self._veth}h")
            _ip("link", "set", f"{self._veth}h", "up")
            _ip("-n", self.netns, "link", "set", f"{self._veth}n", "up")
            for i, name in enumerate(self.names, start=2):
                addr = f"{subnet}.{i}"
                _ip("-n", self.netns, "addr", "add", f"{addr}/24", "dev", f"{self._veth}n")
                self.addresses[name] = addr
                self.procs.append(
                    _serve(self.netns, f"{addr}:{PORT}", name, "--max-seconds", "900")
                )
            for name, addr in self.addresses.items():
                _wait_http(name, addr)
        except BaseException:
            self.stop()
            raise
        return self

    def seen(self, name: str, path: str) -> int:
        """How many requests for ``path`` host ``name`` has served (mirrored copies included)."""
        url = f"http://{self.addresses[name]}:{PORT}/__seen?path={path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.read().decode())

    def stop(self) -> None:
        _unlink(self.netns, self._veth, self.procs)

    def __enter__(self) -> NetnsHosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class PodNetwork:
    """A netns that owns a whole pod CIDR and answers HTTP on every address of it.

    Fake nodes (kwok) hand pods addresses from ``cidr`` (the Node's podCIDR); the real
    EndpointSlice controller puts them in the Services' slices, and a proxy sending a request to
    any of them reaches one server in this namespace (an AnyIP ``local`` route), which answers
    with the address it was reached on (``X-Backend``). So a request's answer names the pod the
    proxy chose. 198.19.0.0/16 keeps clear of NetnsHosts' 198.18.0.0/16; ``stop()`` removes all.
    """

    netns: str = field(default_factory=lambda: f"crp-{secrets.token_hex(3)}")
    cidr: str = ""
    gateway: str = ""  # the root namespace's side of the link (an address for kwok's node IP)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _veth: str = ""
    _route: bool = False

    def start(self) -> PodNetwork:
        self._veth = f"crp{secrets.token_hex(3)}"
        try:
            _link(self.netns, self._veth)
            for _attempt in range(20):  # another run may hold a subnet: pick again
                octet = secrets.randbelow(250) + 1
                try:
                    _ip("addr", "add", f"198.19.{octet}.1/30", "dev", f"{self._veth}h")
                except RuntimeError:
                    continue
                self.gateway = f"198.19.{octet}.1"
                self.cidr = f"198.19.{octet}.128/25"
                break
            else:
                raise RuntimeError("no free 198.19.x.0/24 subnet for the pod network")
            _ip("link", "set", f"{self._veth}h", "up")
            _ip("-n", self.netns, "addr", "add", f"198.19.{octet}.2/30", "dev", f"{self._veth}n")
            _ip("-n", self.netns, "link", "set", f"{self._veth}n", "up")
            _ip("-n", self.netns, "route", "add", "local", self.cidr, "dev", "lo")
            _ip("route", "add", self.cidr, "via", f"198.19.{octet}.2")
            self._route = True
            self.procs.append(
                _serve(
                    self.netns, f"0.0.0.0:{PORT}", "-", "--echo-address", "--max-seconds", "1800"
                )
            )
            probe = f"198.19.{octet}.200"
            _wait_http(probe, probe)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._route:
            subprocess.run(
                ["ip", "route", "del", self.cidr], capture_output=True, check=False, timeout=30
            )
            self._route = False
        _unlink(self.netns, self._veth, self.procs)

    def __enter__(self) -> PodNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
