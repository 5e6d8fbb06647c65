"""Log timestamps (`%m`, `%t`, `%n`) become timezone-aware UTC datetimes; anything else is
`BadTimestamp`, which the parsers count as a malformed record instead of crashing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.timestamps import BadTimestamp, TimestampParser, zone_for

AT = datetime(2026, 11, 29, 3, 41, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29 03:41:04 UTC", AT),
        ("2026-11-29 03:41:04.994 UTC", AT.replace(microsecond=994000)),
        ("2026-11-29 03:41:04.5 UTC", AT.replace(microsecond=500000)),
        ("2026-11-29 03:41:04.000001 UTC", AT.replace(microsecond=1)),
        ("2026-11-29 03:41:04.123456789 UTC", AT.replace(microsecond=123456)),
        ("2026-11-29 03:41:04 GMT", AT),
        ("2026-11-29 04:41:04 CET", AT),
        ("2026-07-29 05:41:04 CEST", AT.replace(month=7)),
        ("2026-11-28 22:41:04.994 EST", AT.replace(microsecond=994000)),
        ("2026-11-29 06:41:04 +03", AT),
        ("2026-11-29 00:11:04.994 -0330", AT.replace(microsecond=994000)),
        ("2026-11-29 09:11:04 +05:30", AT),
        ("2026-11-29 00:11:04 NST", AT),
        ("2026-11-29 03:41:04", AT),
        ("2026-11-29 04:41:04 Europe/Paris", AT),
    ],
)
def test_parse_gives_aware_utc(text: str, expected: datetime) -> None:
    parsed = TimestampParser().parse(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_cached_second_keeps_each_fraction_apart() -> None:
    """The per-second cache must not leak one record's milliseconds into the next."""
    parser = TimestampParser()
    first = parser.parse("2026-11-29 03:41:04.100 UTC")
    whole = parser.parse("2026-11-29 03:41:04 UTC")
    second = parser.parse("2026-11-29 03:41:04.900 UTC")
    assert (first.microsecond, whole.microsecond, second.microsecond) == (100000, 0, 900000)


def test_same_wall_clock_in_two_zones_is_two_instants() -> None:
    parser = TimestampParser()
    utc = parser.parse("2026-11-29 03:41:04 UTC")
    cet = parser.parse("2026-11-29 03:41:04 CET")
    assert utc - cet == timedelta(hours=1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2026-11-29",
        "2026-11-29T03:41:04 UTC",
        "2026-13-29 03:41:04 UTC",
        "2026-02-30 03:41:04 UTC",
        "2026-11-29 25:41:04 UTC",
        "2026-11-29 03:41:04. UTC",
        "2026-11-29 03:41:04.-5 UTC",
        "2026-11-29 03:41:04.9x UTC",
        "2026-11-29 03:41:04 XYZ",
        "2026-11-29 03:41:04 UTC trailing",
        "2026-11-29 03:41:04 +123456",
        "2026-11-29 03:41:04 ../../etc/passwd",
    ],
)
def test_bad_input_raises_bad_timestamp(text: str) -> None:
    with pytest.raises(BadTimestamp):
        TimestampParser().parse(text)


@pytest.mark.parametrize("zone", ["+99", "+2400", "-25"])
def test_out_of_range_offset_raises_bad_timestamp(zone: str) -> None:
    with pytest.raises(BadTimestamp):
        TimestampParser().parse(f"2026-11-29 03:41:04 {zone}")


@pytest.mark.parametrize(
    ("abbreviation", "hours"),
    [("UTC", 0), ("CET", 1), ("CEST", 2), ("EST", -5), ("PDT", -7), ("+03", 3), ("-0330", -3.5)],
)
def test_zone_for(abbreviation: str, hours: float) -> None:
    assert zone_for(abbreviation).utcoffset(None) == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1795923664.994", AT.replace(microsecond=994000)), ("1795923664", AT)],
)
def test_epoch(text: str, expected: datetime) -> None:
    assert TimestampParser().parse_epoch(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "99999999999999999999"])
def test_bad_epoch_raises_bad_timestamp(text: str) -> None:
    with pytest.raises(BadTimestamp):
        TimestampParser().parse_epoch(text)
