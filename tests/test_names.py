"""proxy.names: the one rule for appIds, vendor and district names (docs/configuration.md)."""

from __future__ import annotations

import pytest

from proxy.names import NAME_PATTERN, is_name


@pytest.mark.parametrize("name", ["a", "Z", "0", "app-7", "a.b_c-d", "9" * 64, "v1.2"])
def test_names_that_follow_the_rule(name: str) -> None:
    assert is_name(name)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", ".a", "-a", "_a", "a~b", "a/b", "a b", "é", "a%2e", "x" * 65, "a\n"],
)
def test_names_that_do_not(name: str) -> None:
    assert not is_name(name)


def test_the_pattern_is_spec_s() -> None:
    assert NAME_PATTERN == "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
