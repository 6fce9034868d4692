"""Requests through the proxy under test: each bounded, retried a bounded number of times, counted.

A request "times out through the proxy" in two ways: the proxy itself does not answer within
``timeout`` (a client-side socket timeout), or it answers 502/504 because the backend did not
answer it (Traefik's ``forwardingTimeouts``, see ``_traffic_traefik.py``). Either attempt is
counted and repeated, at most ``attempts`` times per request and ``retry_budget`` times per
client; past either bound the test fails with a :class:`TrafficTimeout` that says what timed
out, how often, and what the proxy and the test hosts looked like then. Never a hang.
"""

from __future__ import annotations

import http.client
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = [
    "GATEWAY_ERRORS",
    "Tally",
    "TrafficClient",
    "TrafficTimeout",
    "consistent",
    "converge",
]

# The proxy's own "the backend did not answer" statuses: Bad Gateway, Gateway Timeout.
GATEWAY_ERRORS = frozenset({502, 504})


class TrafficTimeout(AssertionError):
    """Requests through the proxy kept timing out: the retry bound is exhausted."""


@dataclass
class Tally:
    """What happened to every attempt (printed with the test's results)."""

    answered: int = 0
    timeouts: int = 0  # no answer from the proxy within the client timeout
    gateway: int = 0  # 502/504 from the proxy: a backend did not answer it in time
    resets: int = 0  # connection refused/reset/closed by the proxy
    retries: int = 0  # attempts repeated because of one of the three above
    by_reason: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        return (
            f"{self.answered} requests answered, {self.retries} retried "
            f"({self.timeouts} client timeouts, {self.gateway} proxy 502/504, "
            f"{self.resets} connection errors)"
        )


class TrafficClient:
    """One keep-alive connection to the proxy, re-opened after any failed attempt."""

    def __init__(
        self,
        port: int,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        retry_budget: int = 20,
        describe: Callable[[], str] = lambda: "",
        host: str = "127.0.0.1",
    ) -> None:
        if attempts < 1 or retry_budget < 0:
            raise ValueError("attempts must be >= 1 and retry_budget >= 0")
        self.address = (host, port)
        self.timeout = timeout
        self.attempts = attempts
        self.retry_budget = retry_budget
        self.describe = describe
        self.tally = Tally()
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> TrafficClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(*self.address, timeout=self.timeout)
        return self._conn

    def get(self, host: str, headers: dict[str, str] | None = None, path: str = "/") -> str:
        """``GET path`` with this Host; the answering backend's name, or ``HTTP <status>``."""
        failures: list[str] = []
        for attempt in range(1, self.attempts + 1):
            answer, reason = self._attempt(host, headers or {}, path)
            if answer is not None:
                return answer
            failures.append(reason)
            self.tally.by_reason[reason] += 1
            if attempt == self.attempts:
                break
            if self.tally.retries >= self.retry_budget:
                raise TrafficTimeout(
                    f"GET http://{host}{path} through the proxy at {self.address[0]}:"
                    f"{self.address[1]}: {reason}; the retry budget of {self.retry_budget} "
                    f"retries for this client is used up ({self.tally.line()}; by reason: "
                    f"{dict(self.tally.by_reason)})\n{self.describe()}"
                )
            self.tally.retries += 1
        raise TrafficTimeout(
            f"GET http://{host}{path} through the proxy at {self.address[0]}:{self.address[1]} "
            f"failed {self.attempts} times in a row ({'; '.join(failures)}); "
            f"{self.tally.line()}\n{self.describe()}"
        )

    def _attempt(self, host: str, headers: dict[str, str], path: str) -> tuple[str | None, str]:
        """``(backend name or "HTTP <status>", "")``, or ``(None, why)`` for a retryable failure."""
        conn = self._connection()
        try:
            conn.request("GET", path, headers={"Host": host, **headers})
            r = conn.getresponse()
            r.read()
        except TimeoutError:
            self.tally.timeouts += 1
            self.close()
            return None, f"no answer within {self.timeout:g}s (client timeout)"
        except (OSError, http.client.HTTPException) as exc:
            self.tally.resets += 1
            self.close()
            return None, f"connection error: {type(exc).__name__}: {exc}"
        if r.status in GATEWAY_ERRORS:
            self.tally.gateway += 1
            self.close()
            return None, f"HTTP {r.status} from the proxy (a backend did not answer it)"
        self.tally.answered += 1
        if r.will_close:
            self.close()
        return r.getheader("X-Backend") or f"HTTP {r.status}", ""

    def send(
        self,
        host: str,
        n: int,
        headers: dict[str, str] | None = None,
        *,
        within: float,
        what: str = "",
        path: str = "/",
    ) -> Counter[str]:
        """``n`` requests, all within ``within`` seconds; answers counted by backend."""
        counts: Counter[str] = Counter()
        deadline = time.monotonic() + within
        for i in range(n):
            if time.monotonic() > deadline:
                raise TrafficTimeout(
                    f"{what or 'requests'} through the proxy: only {i} of {n} answered within "
                    f"{within:g}s (answers so far {dict(counts)}; {self.tally.line()})\n"
                    f"{self.describe()}"
                )
            counts[self.get(host, headers, path)] += 1
        return counts


def consistent(canary: int, n: int, p: Fraction) -> bool:
    """Within 4 binomial standard deviations (exact for p = 0 or 1)."""
    sigma = math.sqrt(n * float(p) * (1 - float(p)))
    return abs(canary - n * float(p)) <= 4 * sigma + 1e-9


def converge(
    probe: Callable[[int, float], Counter[str]],
    new: Fraction,
    old: Fraction,
    *,
    batch: int,
    timeout: float,
    describe: Callable[[], str] = lambda: "",
) -> float:
    """Seconds until a probe batch fits the canary share ``new`` and (when they differ) not
    ``old``.

    ``probe(n, within)`` sends ``n`` requests that must all be answered within ``within``
    seconds (:meth:`TrafficClient.send`) and counts them as ``stable`` / ``canary``; a batch
    that cannot finish before the deadline fails inside, naming the deadline."""
    start = time.monotonic()
    counts: Counter[str] = Counter()
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            raise AssertionError(
                f"no convergence to canary share {new} (from {old}) within {timeout:g}s "
                f"(last batch {dict(counts)})\n{describe()}"
            )
        counts = probe(batch, left)
        c = counts["canary"]
        if (
            counts["stable"] + c == batch
            and consistent(c, batch, new)
            and (new == old or not consistent(c, batch, old))
        ):
            return time.monotonic() - start
        time.sleep(0.1)
