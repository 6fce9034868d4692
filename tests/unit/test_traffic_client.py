"""The traffic tests' client (e2e/_traffic_client.py) against local sockets: a request that times
out is retried a bounded number of times and counted, and a used-up bound fails fast with a
message that names what timed out. No cluster and no proxy needed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from e2e._traffic_client import TrafficClient, TrafficTimeout
from tests.conftest import silent_server


@contextmanager
def scripted_server(answer: Callable[[int], tuple[int, float]]) -> Iterator[int]:
    """``answer(n)`` -> (status, delay) for the n-th request (0-based); 200 says "stable"."""
    seen = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 5

        def do_GET(self) -> None:
            with lock:
                n = seen[0]
                seen[0] += 1
            status, delay = answer(n)
            time.sleep(delay)
            self.send_response(status)
            if status == 200:
                self.send_header("X-Backend", "stable")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


def test_a_proxy_that_never_answers_fails_after_the_bounded_attempts() -> None:
    with silent_server() as port:
        client = TrafficClient(port, timeout=0.2, attempts=3, describe=lambda: "hosts: all dead")
        start = time.monotonic()
        with pytest.raises(TrafficTimeout) as info:
            client.get("shop.example.com")
        took = time.monotonic() - start
    message = str(info.value)
    assert "GET http://shop.example.com/" in message
    assert "failed 3 times in a row" in message
    assert "no answer within 0.2s (client timeout)" in message
    assert "hosts: all dead" in message  # the caller's picture of the test hosts
    assert (client.tally.timeouts, client.tally.retries, client.tally.answered) == (3, 2, 0)
    assert took < 3 * 0.2 + 2, took  # three timeouts, not a hang


def test_a_gateway_timeout_is_retried_counted_and_then_answered() -> None:
    with (
        scripted_server(lambda n: (504, 0) if n < 2 else (200, 0)) as port,
        TrafficClient(port, timeout=2, attempts=3) as client,
    ):
        assert client.get("shop.example.com") == "stable"
        assert client.send("shop.example.com", 5, within=10) == {"stable": 5}
    t = client.tally
    assert (t.gateway, t.retries, t.answered, t.timeouts) == (2, 2, 6, 0)
    assert "6 requests answered, 2 retried (0 client timeouts, 2 proxy 502/504" in t.line()


def test_the_retry_budget_bounds_retries_across_requests() -> None:
    # Every other request fails: each one alone would succeed on its second attempt.
    with scripted_server(lambda n: (502, 0) if n % 2 == 0 else (200, 0)) as port:
        client = TrafficClient(port, timeout=2, attempts=3, retry_budget=2)
        assert client.get("h") == "stable"
        assert client.get("h") == "stable"
        with pytest.raises(TrafficTimeout, match="retry budget of 2 retries for this client"):
            client.get("h")
        client.close()
    assert client.tally.retries == 2
    assert client.tally.gateway == 3


def test_a_slow_sample_fails_at_its_deadline_not_after_all_requests() -> None:
    with scripted_server(lambda n: (200, 0.1)) as port:
        client = TrafficClient(port, timeout=2)
        start = time.monotonic()
        with pytest.raises(
            TrafficTimeout, match=r"sample through the proxy: only \d+ of 100 answered within 0.3s"
        ):
            client.send("h", 100, within=0.3, what="sample")
        client.close()
    assert time.monotonic() - start < 2


def test_other_statuses_are_answers_not_retries() -> None:
    # 404/503 are what a proxy says before it knows the route: the convergence loop's business.
    with scripted_server(lambda n: (404, 0)) as port, TrafficClient(port, timeout=2) as client:
        assert client.get("h") == "HTTP 404"
    assert client.tally.retries == 0


def test_bounds_must_be_sane() -> None:
    with pytest.raises(ValueError, match="attempts"):
        TrafficClient(1, attempts=0)
