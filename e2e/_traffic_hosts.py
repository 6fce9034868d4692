"""Backend test hosts in a network namespace, reachable from the root namespace over a veth.

The API server refuses loopback addresses in EndpointSlices, so the backends Traefik routes to
live on 198.18.0.0/15 (the benchmarking range, never routed) inside a namespace this test
creates and always deletes. Everything here needs root (CAP_NET_ADMIN).

The /24 is one no interface on the machine uses yet: two runs (or a run and the leftovers of a
killed one) sharing a subnet would route one run's traffic into the other's namespace, where
nobody answers. The host processes die with the test process (PR_SET_PDEATHSIG) and, as a last
resort, after ``MAX_SECONDS``; ``alive()`` and ``describe()`` say which one stopped answering.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from e2e.cluster import _pdeathsig

SERVER = Path(__file__).with_name("_traffic_server.py")
PORT = 8080
# Last-resort lifetime of a host process (they die with the test process anyway): longer than
# any CI run (90 min), so a slow run never outlives its backends.
MAX_SECONDS = 3 * 3600
IP_TIMEOUT = 30.0  # one `ip` command (netlink; milliseconds normally)


class HostsUnavailable(RuntimeError):
    """No root / no iproute2: the traffic test cannot run here."""


def _ip(*args: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(
            ["ip", *args], capture_output=True, text=True, check=False, timeout=IP_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"ip {' '.join(args)} did not finish within {IP_TIMEOUT:g}s") from None
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _free_subnet(prefix: str) -> str:
    """A ``<prefix>.N`` (a /24) in which no interface of the machine has an address yet."""
    pattern = rf"\b{re.escape(prefix)}\.(\d+)\.\d+/"
    used = {int(m) for m in re.findall(pattern, _ip("-o", "-4", "addr", "show"))}
    free = [n for n in range(1, 251) if n not in used]
    if not free:
        raise RuntimeError(f"every {prefix}.N.0/24 (N=1..250) is in use: leftover test netns?")
    return f"{prefix}.{free[secrets.randbelow(len(free))]}"


def _state(pid: int) -> str:
    """'running', or what /proc says otherwise (a SIGSTOPped host accepts and never answers)."""
    try:
        code = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
    return {"T": "STOPPED", "t": "STOPPED (traced)", "Z": "EXITED (zombie)"}.get(code, "running")


def _wait_http(
    name: str, addr: str, timeout: float = 20.0, describe: Callable[[], str] = lambda: ""
) -> None:
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
            raise RuntimeError(
                f"test host {name} at {addr}:{PORT} did not answer within {timeout:g}s "
                f"({describe()})"
            )
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
    if veth:
        _ip("link", "del", f"{veth}h", check=False)
    _ip("netns", "del", netns, check=False)


def _serve(netns: str, listen: str, name: str, *extra: str) -> subprocess.Popen[bytes]:
    """The test server inside ``netns``: it dies with the test process and, at the latest,
    after ``MAX_SECONDS``."""
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            str(SERVER),
            listen,
            name,
            "--max-seconds",
            str(MAX_SECONDS),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # `ip netns exec` execs the server in place, so the signal carries over.
        preexec_fn=_pdeathsig,  # noqa: PLW1509 - die with the test process
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
        self._veth = f"crt{secrets.token_hex(3)}"
        try:
            _link(self.netns, self._veth)
            subnet = _free_subnet("198.18")
            _ip("addr", "add", f"{subnet}.1/24", "dev", f"{self._veth}h")
            _ip("link", "set", f"{self._veth}h", "up")
            _ip("-n", self.netns, "link", "set", f"{self._veth}n", "up")
            for i, name in enumerate(self.names, start=2):
                addr = f"{subnet}.{i}"
                _ip("-n", self.netns, "addr", "add", f"{addr}/24", "dev", f"{self._veth}n")
                self.addresses[name] = addr
                self.procs.append(_serve(self.netns, f"{addr}:{PORT}", name))
            for name, addr in self.addresses.items():
                _wait_http(name, addr, describe=self.describe)
        except BaseException:
            self.stop()
            raise
        return self

    def seen(self, name: str, path: str) -> int:
        """How many requests for ``path`` host ``name`` has served (mirrored copies included)."""
        url = f"http://{self.addresses[name]}:{PORT}/__seen?path={path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.read().decode())

    def process(self, name: str) -> subprocess.Popen[bytes]:
        return dict(zip(self.addresses, self.procs, strict=False))[name]

    def freeze(self, name: str, timeout: float = 10.0) -> subprocess.Popen[bytes]:
        """SIGSTOP host ``name`` and return once /proc shows it stopped: ``kill`` returns before
        the kernel has stopped every thread, and on a busy machine a request sent in between
        could still be answered."""
        proc = self.process(name)
        proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while (state := _state(proc.pid)) != "STOPPED":
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"host {name} (pid {proc.pid}) not stopped after SIGSTOP: {state}"
                )
            time.sleep(0.01)
        return proc

    def alive(self) -> dict[str, int | None]:
        """Host name -> None while its process runs, else its exit code."""
        return {name: p.poll() for name, p in zip(self.addresses, self.procs, strict=False)}

    def describe(self) -> str:
        """One line for failure messages: each host's address and what its process is doing."""
        parts = []
        for name, code in self.alive().items():
            state = f"EXITED with {code}" if code is not None else _state(self.process(name).pid)
            parts.append(f"{name} {self.addresses[name]}:{PORT} {state}")
        return f"test hosts in netns {self.netns}: " + ", ".join(parts)

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
            octet = _free_subnet("198.19").rsplit(".", 1)[1]
            _ip("addr", "add", f"198.19.{octet}.1/30", "dev", f"{self._veth}h")
            self.gateway = f"198.19.{octet}.1"
            self.cidr = f"198.19.{octet}.128/25"
            _ip("link", "set", f"{self._veth}h", "up")
            _ip("-n", self.netns, "addr", "add", f"198.19.{octet}.2/30", "dev", f"{self._veth}n")
            _ip("-n", self.netns, "link", "set", f"{self._veth}n", "up")
            _ip("-n", self.netns, "route", "add", "local", self.cidr, "dev", "lo")
            _ip("route", "add", self.cidr, "via", f"198.19.{octet}.2")
            self._route = True
            self.procs.append(_serve(self.netns, f"0.0.0.0:{PORT}", "-", "--echo-address"))
            probe = f"198.19.{octet}.200"
            _wait_http(probe, probe)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._route:
            _ip("route", "del", self.cidr, check=False)
            self._route = False
        _unlink(self.netns, self._veth, self.procs)

    def __enter__(self) -> PodNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
