"""proxy.config.model: the value parsers of durations, sizes, rates and listen addresses
(docs/configuration.md)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config import Listen, Rate, parse_duration, parse_listen, parse_rate, parse_size

# -- durations, sizes, rates, listen addresses --------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("500ms", 0.5), ("1.5s", 1.5),
])  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "30 sec", "s", "-1s", "1w", "", "30S"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("value", "size"), [
    ("64MB", 64_000_000), ("512KB", 512_000), ("1GB", 10**9), ("1MiB", 1024**2), ("100", 100),
    (4096, 4096), ("64mb", 64_000_000),
])  # fmt: skip
def test_sizes(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["64 MBs", "-1MB", "MB", True, -5, 1.5])
def test_bad_sizes(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(value)


def test_rates() -> None:
    assert parse_rate("1200/m") == Rate(1200, 60)
    assert parse_rate("20/s").per_second == 20
    assert parse_rate("10000/h").burst == 10000
    for bad in ("0/s", "5/d", "1200 per minute", "/m", "1200"):
        with pytest.raises(ValueError, match="invalid rate"):
            parse_rate(bad)


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9090") == Listen("127.0.0.1", 9090)
    assert parse_listen(":8080") == Listen("0.0.0.0", 8080)
    assert parse_listen("[::1]:8080") == Listen("::1", 8080)
    assert str(Listen("::1", 8080)) == "[::1]:8080"
    for bad in ("8080", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError, match="invalid listen address"):
            parse_listen(bad)
