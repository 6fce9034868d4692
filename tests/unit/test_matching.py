from __future__ import annotations

import re

import re2
from hypothesis import given
from hypothesis import strategies as st

from routers.planning.matching import anchored, escape_regex, exact_regex, prefix_regex

text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


@given(text, text)
def test_prefix_regex_means_startswith_under_full_match_and_search(prefix: str, value: str) -> None:
    rx = prefix_regex(prefix)
    assert (re2.fullmatch(rx, value) is not None) == value.startswith(prefix)
    assert (re.search(rx, value) is not None) == value.startswith(prefix)


@given(text, text)
def test_exact_regex_means_equality(literal: str, value: str) -> None:
    rx = exact_regex(literal)
    assert (re2.fullmatch(rx, value) is not None) == (value == literal)
    assert (re.search(rx, value) is not None) == (value == literal)


def test_no_unescaped_prefix_dot_star() -> None:
    assert prefix_regex("v1.2") == "^v1\\.2.*"
    assert re2.fullmatch(prefix_regex("v1.2"), "v1x2") is None


def test_anchored_gives_search_engines_whole_value_semantics() -> None:
    assert re.search(anchored("a|b"), "xa") is None
    assert re.search(anchored("a|b"), "b") is not None
    assert escape_regex("$(x)") == "\\$\\(x\\)"
