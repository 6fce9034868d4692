"""The request syntax people paste into ``routers explain --request``."""

from __future__ import annotations

import pytest

from routers.errors import ConfigError
from routers.simulate import Request, parse_request


def test_method_path_and_header_without_space() -> None:
    req = parse_request("GET /api -H X-Canary:always")
    assert (req.method, req.path, req.headers) == ("GET", "/api", (("X-Canary", "always"),))
    assert req.header("x-canary") == "always"


def test_defaults_query_cookies_and_full_url() -> None:
    req = parse_request("/api?x=1&flag&x=2")
    assert req.method == "GET"
    assert req.query == (("x", "1"), ("flag", ""), ("x", "2"))
    assert req.query_values("x") == ["1", "2"]
    req = parse_request("post https://Shop.Example.com:8443/a -H 'X-A: b c' -b 'u=1; v=2'")
    assert (req.method, req.scheme, req.path, req.host) == (
        "POST",
        "https",
        "/a",
        "shop.example.com",
    )
    assert req.header("X-A") == "b c"
    assert (req.cookie("u"), req.cookie("v"), req.cookie("w")) == ("1", "2", None)


def test_repeated_headers_join_and_cookie_header() -> None:
    req = Request(headers=(("X-A", "1"), ("x-a", "2"), ("Cookie", "a=b; canary=always")))
    assert req.header("X-A") == "1,2"
    assert req.first_header("X-A") == "1"
    assert req.cookie("canary") == "always"
    assert req.header("missing") is None


def test_round_trip_through_str() -> None:
    req = parse_request("PUT /p?q=1 -H 'X-A: two words' -b c=d")
    assert parse_request(str(req)) == req


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty request"),
        ("GET", "missing path"),
        ("GET api", "must start with '/'"),
        ("GET /a -H nocolon", "is not 'Name: value'"),
        ("GET /a -H 'bad name: x'", "is not 'Name: value'"),
        ("GET /a -X POST", "unexpected '-X'"),
        ("GET /a -b novalue", "is not name=value"),
        ("G(T /a", "is not an HTTP method"),
        ("GET /a -H 'unterminated", "quotation"),
    ],
)
def test_errors_name_the_field(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_request(text, field_path="--request[0]")
    assert exc.value.problems[0].path == "--request[0]"
    assert fragment in str(exc.value)
