"""PostgreSQL log timestamps (`2026-11-29 03:35:50.123 UTC`) to aware UTC datetimes, fast.

The zone is the abbreviation of `log_timezone` (`UTC`, `CET`, `+03`, `-0330`). A replay parses a
million of these: the part up to the second is parsed once per distinct second and cached.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.events import us_from_utc, utc_from_us

# Abbreviations PostgreSQL prints for common log_timezone settings (standard and summer time).
_ABBREVIATIONS: dict[str, float] = {
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "UT": 0,
    "WET": 0,
    "WEST": 1,
    "BST": 1,
    "IST": 1,
    "CET": 1,
    "CEST": 2,
    "MET": 1,
    "MEST": 2,
    "EET": 2,
    "EEST": 3,
    "MSK": 3,
    "EST": -5,
    "EDT": -4,
    "CST": -6,
    "CDT": -5,
    "MST": -7,
    "MDT": -6,
    "PST": -8,
    "PDT": -7,
    "AKST": -9,
    "AKDT": -8,
    "HST": -10,
    "AST": -4,
    "ADT": -3,
    "NST": -3.5,
    "NDT": -2.5,
    "JST": 9,
    "KST": 9,
    "HKT": 8,
    "SGT": 8,
    "AWST": 8,
    "ACST": 9.5,
    "ACDT": 10.5,
    "AEST": 10,
    "AEDT": 11,
    "NZST": 12,
    "NZDT": 13,
    "SAST": 2,
    "WAT": 1,
    "CAT": 2,
    "EAT": 3,
}


class BadTimestamp(ValueError):
    """Not a PostgreSQL log timestamp."""


def zone_for(abbreviation: str) -> tzinfo:
    """The fixed offset a log timezone abbreviation stands for.

    >>> zone_for("+0530")
    datetime.timezone(datetime.timedelta(seconds=19800))
    >>> zone_for("CEST")
    datetime.timezone(datetime.timedelta(seconds=7200))

    Raises:
        BadTimestamp: an abbreviation we cannot place.
    """
    if abbreviation in _ABBREVIATIONS:
        hours = _ABBREVIATIONS[abbreviation]
        return UTC if hours == 0 else timezone(timedelta(hours=hours))
    if abbreviation[:1] in "+-" and abbreviation[1:].replace(":", "").isdecimal():
        sign = -1 if abbreviation[0] == "-" else 1
        digits = abbreviation[1:].replace(":", "")
        if len(digits) <= 2:
            hours, minutes = int(digits), 0
        elif len(digits) == 4:
            hours, minutes = int(digits[:2]), int(digits[2:])
        else:
            raise BadTimestamp(f"bad zone offset {abbreviation!r}")
        if hours > 23 or minutes > 59:
            raise BadTimestamp(f"zone offset out of range {abbreviation!r}")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(abbreviation)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadTimestamp(f"unknown time zone {abbreviation[:20]!r}") from None


class TimestampParser:
    """Parses `YYYY-MM-DD HH:MM:SS[.fff] ZONE` into UTC microseconds since the epoch, fast.

    The second and zone are parsed once per distinct second and cached: a call then costs a
    slice, a dictionary look-up and an addition.
    """

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def parse_us(self, text: str) -> int:
        """Parse one log timestamp into microseconds since the Unix epoch (UTC).

        Raises:
            BadTimestamp: the text is not one.
        """
        if (
            len(text) > 24
            and text[19] == "."
            and text[23] == " "
            and text[16] == ":"
            and text[17:19].isdecimal()  # not isdigit: int() refuses "²"
            and text[20:23].isdecimal()
        ):
            # the common `%m` shape: the minute and zone are cached, seconds and ms added
            key = text[:16] + text[23:]
            base = self._cache.get(key)
            if base is None:
                base = self._remember(key, text[:16] + ":00", text[24:], text)
            second = int(text[17:19])
            if second > 60:
                raise BadTimestamp(f"bad timestamp {text[:40]!r}")
            return base + second * 1_000_000 + int(text[20:23]) * 1000
        key, micro = self._split(text)
        base = self._cache.get(key)
        if base is None:
            base = self._remember(key, key[:19], key[20:], text)
        return base + micro

    def _remember(self, key: str, second: str, zone: str, text: str) -> int:
        base = self._parse_second(second, zone, text)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = base
        return base

    def parse(self, text: str) -> datetime:
        """Parse one log timestamp into an aware UTC datetime.

        Raises:
            BadTimestamp: the text is not one.
        """
        return utc_from_us(self.parse_us(text))

    @staticmethod
    def _split(text: str) -> tuple[str, int]:
        second, rest, micro = text[:19], text[19:], 0
        if rest[:1] == ".":
            space = rest.find(" ")
            frac = rest[1:space] if space > 0 else rest[1:]
            if not frac.isdecimal():
                raise BadTimestamp(f"bad timestamp {text[:40]!r}")
            micro = int((frac + "000000")[:6])
            rest = rest[space:] if space > 0 else ""
        return f"{second} {rest.strip()}", micro

    @staticmethod
    def _parse_second(second: str, zone: str, text: str) -> int:
        # strptime costs ~10 us a call; a log has a new second every few records
        if (
            len(second) != 19
            or second[4] != "-"
            or second[7] != "-"
            or second[10] != " "
            or second[13] != ":"
            or second[16] != ":"
        ):
            raise BadTimestamp(f"bad timestamp {text[:40]!r}")
        try:
            naive = datetime(  # noqa: DTZ001 - the zone is applied below
                int(second[0:4]),
                int(second[5:7]),
                int(second[8:10]),
                int(second[11:13]),
                int(second[14:16]),
                int(second[17:19]),
            )
            tz = zone_for(zone) if zone else UTC
            u = naive.replace(tzinfo=tz).astimezone(UTC)
        except (ValueError, OverflowError):
            raise BadTimestamp(f"bad timestamp {text[:40]!r}") from None
        return us_from_utc(u)

    def parse_epoch(self, text: str) -> datetime:
        """Parse `%n` (seconds since the epoch, with milliseconds) into an aware UTC datetime.

        Raises:
            BadTimestamp: not a number of seconds.
        """
        return utc_from_us(self.parse_epoch_us(text))

    def parse_epoch_us(self, text: str) -> int:
        """Parse `%n` (seconds since the epoch, with milliseconds) into microseconds.

        Raises:
            BadTimestamp: not a number of seconds.
        """
        seconds, _, frac = text.partition(".")
        if not seconds.isdecimal() or (frac and not frac.isdecimal()) or len(seconds) > 12:
            raise BadTimestamp(f"bad epoch timestamp {text[:40]!r}")
        return int(seconds) * 1_000_000 + int((frac + "000000")[:6])
