"""``proxy.courtesy.schedule``: windows and pauses read in the district's zone, at a time the
test gives (docs/configuration.md "SIS courtesy"); and ``config validate``'s words for bad ones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from proxy import config as config_mod
from proxy.check.config_items import not_paused
from proxy.courtesy import cap_at, coming_pause, describe_now, pause_end, paused, window_at
from proxy.courtesy.schedule import parse_days
from proxy.errors import ConfigError

PEAK = {"days": "mon-fri", "from": "07:00", "to": "16:00", "max_connections": 1}
SUMMER = {"from": date(2027, 6, 20), "to": date(2027, 8, 1), "reason": "summer rollover"}


def district(**keys: Any) -> config_mod.DistrictConfig:
    table = {"base_url": "https://sis.example", "timezone": "America/Chicago", **keys}
    return config_mod.validate({"districts": {"springfield": table}}).districts["springfield"]


def problems(**keys: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        district(**keys)
    return err.value.problems


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("sat,sun", {5, 6}),
        ("mon-wed,fri", {0, 1, 2, 4}),
        ("fri-mon", {4, 5, 6, 0}),
        ("Tue", {1}),
    ],
)
def test_days_read_ranges_and_lists(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


def test_the_window_is_read_in_the_district_zone() -> None:
    d = district(max_connections=5, windows=[PEAK])
    # Monday 2027-03-01: Chicago is UTC-6, so 07:00 there is 13:00 UTC.
    assert cap_at(d, utc(2027, 3, 1, 12, 59)) == 5
    assert window_at(d, utc(2027, 3, 1, 13, 0)) is d.windows[0]
    assert cap_at(d, utc(2027, 3, 1, 13, 0)) == 1
    assert cap_at(d, utc(2027, 3, 1, 21, 59)) == 1  # 15:59 in Chicago
    assert cap_at(d, utc(2027, 3, 1, 22, 0)) == 5  # 16:00: the window has ended
    assert cap_at(d, utc(2027, 3, 6, 15, 0)) == 5  # Saturday
    # After the switch to daylight time (2027-03-14) 07:00 in Chicago is 12:00 UTC.
    assert cap_at(d, utc(2027, 3, 15, 12, 0)) == 1


def test_outside_every_window_an_uncapped_district_stays_uncapped() -> None:
    d = district(windows=[PEAK])
    assert cap_at(d, utc(2027, 3, 1, 13, 0)) == 1
    assert cap_at(d, utc(2027, 3, 1, 23, 0)) is None


def test_a_pause_covers_both_its_days_in_the_district_zone() -> None:
    d = district(pauses=[SUMMER])
    # 2027-06-20 00:00 in Chicago (CDT, UTC-5) is 05:00 UTC.
    assert paused(d, utc(2027, 6, 20, 4, 59)) is None
    assert paused(d, utc(2027, 6, 20, 5, 0)) == d.pauses[0]
    # The whole of 2027-08-01 in Chicago, which ends at 2027-08-02 05:00 UTC.
    assert paused(d, utc(2027, 8, 2, 4, 59)) == d.pauses[0]
    assert paused(d, utc(2027, 8, 2, 5, 0)) is None
    assert pause_end(d, d.pauses[0]) == utc(2027, 8, 2, 5, 0)


def test_a_coming_pause_is_named_within_thirty_days() -> None:
    d = district(pauses=[SUMMER])
    assert coming_pause(d, utc(2027, 5, 20, 12)) is None  # 31 days ahead
    assert coming_pause(d, utc(2027, 5, 21, 12)) == d.pauses[0]


def test_not_paused_fails_during_a_pause_and_warns_before_one() -> None:
    d = district(pauses=[SUMMER])
    during = not_paused(d, utc(2027, 7, 4, 12))
    assert during.status == "fail"
    assert "summer rollover" in during.detail and "2027-08-01" in during.detail
    assert during.detail.endswith("the district paused syncs until the date shown")
    soon = not_paused(d, utc(2027, 6, 1, 12))
    assert soon.status == "ok" and soon.detail.startswith("warning:")
    assert "2027-06-20" in soon.detail and "summer rollover" in soon.detail
    later = not_paused(d, utc(2027, 1, 1, 12))
    assert later.status == "ok" and "warning" not in later.detail
    assert not_paused(district(), utc(2027, 7, 4)).status == "ok"


def test_the_console_line_says_the_window_or_the_pause() -> None:
    d = district(max_connections=5, windows=[PEAK], pauses=[SUMMER])
    assert describe_now(d, utc(2027, 7, 5, 14)).startswith("paused until 2027-08-01")
    assert describe_now(d, utc(2027, 3, 1, 14)).startswith("peak window mon-fri 07:00-16:00")
    assert describe_now(d, utc(2027, 3, 1, 23)).startswith("outside its windows: 5 at once")


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"timezone": "Mars/Olympus"},
            'districts.springfield.timezone: unknown time zone "Mars/Olympus"',
        ),
        (
            {"windows": [{**PEAK, "from": "16:00", "to": "07:00"}]},
            "districts.springfield.windows[0].to: 07:00 is not after from = 16:00",
        ),
        (
            {"windows": [PEAK, {**PEAK, "days": "fri-sat", "from": "15:00", "to": "18:00"}]},
            "districts.springfield.windows[1]: overlaps windows[0]",
        ),
        (
            {"pauses": [{**SUMMER, "to": date(2027, 6, 1)}]},
            "districts.springfield.pauses[0].to: 2027-06-01 is before from = 2027-06-20",
        ),
        (
            {"windows": [{**PEAK, "max_connections": 0}]},
            "districts.springfield.windows[0].max_connections: must be an integer >= 1",
        ),
        ({"max_connections": 0}, "districts.springfield.max_connections: must be an integer >= 1"),
        (
            {"windows": [{**PEAK, "days": "weekdays"}]},
            'districts.springfield.windows[0].days: unknown weekday in "weekdays"',
        ),
        (
            {"pauses": [{"from": date(2027, 6, 20), "to": date(2027, 8, 1)}]},
            "districts.springfield.pauses[0].reason: required",
        ),
        ({"windows": "mon-fri"}, "districts.springfield.windows: must be a list of tables"),
    ],
)
def test_config_validate_names_the_key_of_each_bad_value(
    keys: dict[str, Any], expected: str
) -> None:
    found = problems(**keys)
    assert any(p.startswith(expected) for p in found), found


def test_a_window_may_end_at_midnight_and_dates_may_be_quoted() -> None:
    d = district(
        windows=[{"days": "sat,sun", "from": "00:00", "to": "24:00", "max_connections": 2}],
        pauses=[{"from": "2027-12-20", "to": "2028-01-02", "reason": "winter break"}],
    )
    assert cap_at(d, utc(2027, 3, 7, 5, 59)) == 2  # Saturday 23:59 in Chicago
    assert paused(d, utc(2027, 12, 25, 12)) is not None
    assert timedelta(0) < pause_end(d, d.pauses[0]) - utc(2027, 12, 25, 12)


def test_every_bad_window_is_named_at_once() -> None:
    found = problems(
        windows=[
            PEAK,
            {**PEAK, "days": "fri", "from": "15:00", "to": "06:00"},
            {"days": "sat,sun", "from": "08:00", "to": "12:00", "max_connections": 2},
            {"days": "sun", "from": "11:00", "to": "13:00", "max_connections": 2},
        ]
    )
    assert any(p.startswith("districts.springfield.windows[1].to: 06:00") for p in found)
    assert any(p.startswith("districts.springfield.windows[3]: overlaps windows[2]") for p in found)
