"""Habits: what each principal (and each role's principals) usually does, learned from event time.

A habit is a few numbers per day (statements, rows, the busiest hour) for the last two weeks and the
hours of the day the principal has been active. It is what "unusual" is measured against, and it
persists in the state dir so a restart does not forget who is normal (nor restart learning).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from core.windows import DAY_US

KEEP_DAYS = 14
"""Days of history kept per principal."""

# the columns of a day's stats (a plain list: this is on the hot path)
STATEMENTS, MULTI_ROWS, LOOKUPS, MAX_HOUR_MULTI, MAX_HOUR_LOOKUPS, MAX_STATEMENT_ROWS = range(6)


class Habit:
    """One principal's habit on one table: fed one hour at a time, asked when a signal fires.

    The engine counts the statements of the current hour on its live reader (cheaper than a call
    per statement) and hands the hour over when the next one starts (`add_hour`).
    """

    __slots__ = ("first_us", "last_us", "hours", "days", "_today", "_today_hours")

    def __init__(self, first_us: int) -> None:
        self.first_us = first_us
        self.last_us = first_us
        self.hours = [0] * 24
        """For each hour of the day (UTC), on how many earlier days the principal was active in
        it (today is added when the day ends)."""
        self.days: dict[int, list[int]] = {}
        """Day number (since the epoch) -> stats, the last KEEP_DAYS days with activity."""
        self._today = -1
        self._today_hours = 0
        """Bit h set: active at hour h today (folded into `hours` when the day ends)."""

    def add_hour(
        self, hour: int, statements: int, multi_rows: int, lookups: int, max_rows: int
    ) -> None:
        """Fold one hour of activity (hours since the epoch) into its day.

        `multi_rows`: rows read by statements other than key lookups; `lookups`: key lookups;
        `max_rows`: the most rows one statement read. An hour handed over in two parts (the
        engine saves mid-hour) adds up the same; only its busiest-hour figures are split.
        """
        if not statements:
            return
        day_index = hour // 24
        if day_index != self._today:
            self._close_day()
            self._today = day_index
        self._today_hours |= 1 << (hour % 24)
        day = self.days.get(day_index)
        if day is None:
            day = self.days[day_index] = [0, 0, 0, 0, 0, 0]
            if len(self.days) > KEEP_DAYS:
                del self.days[min(self.days)]
        day[STATEMENTS] += statements
        day[MULTI_ROWS] += multi_rows
        day[LOOKUPS] += lookups
        day[MAX_HOUR_MULTI] = max(day[MAX_HOUR_MULTI], multi_rows)
        day[MAX_HOUR_LOOKUPS] = max(day[MAX_HOUR_LOOKUPS], lookups)
        day[MAX_STATEMENT_ROWS] = max(day[MAX_STATEMENT_ROWS], max_rows)

    def _close_day(self) -> None:
        mask = self._today_hours
        for h in range(24):
            if mask >> h & 1:
                self.hours[h] += 1
        self._today_hours = 0

    def past(self, now_us: int, column: int) -> int | None:
        """The largest value of `column` over the days before today; None without such a day.

        Only whole past days count: today's traffic is what is being judged.
        """
        today = now_us // DAY_US
        values = [day[column] for index, day in self.days.items() if index < today]
        return max(values) if values else None

    def past_days(self, now_us: int) -> int:
        """Days before today on which this principal was active (within the kept history)."""
        today = now_us // DAY_US
        return sum(1 for index in self.days if index < today)

    def usual_hours(self) -> list[int]:
        """The hours of the day (UTC) this principal was active in on earlier days, ascending."""
        return [h for h, n in enumerate(self.hours) if n]

    def unusual(self, hour_of_day: int) -> bool:
        """Never active within an hour of this hour of the day on earlier days."""
        hours = self.hours
        return not (hours[hour_of_day - 1] or hours[hour_of_day] or hours[(hour_of_day + 1) % 24])

    # persistence ------------------------------------------------------------------------------

    def to_record(self) -> HabitRecord:
        return HabitRecord(
            self.first_us,
            self.last_us,
            list(self.hours),
            {str(k): list(v) for k, v in self.days.items()},
            self._today,
            self._today_hours,
        )

    @classmethod
    def from_record(cls, record: HabitRecord) -> Habit:
        habit = cls(record.first_us)
        habit.last_us = record.last_us
        habit.hours = list(record.hours)[:24] + [0] * max(0, 24 - len(record.hours))
        habit.days = {int(k): (list(v) + [0] * 6)[:6] for k, v in record.days.items()}
        habit._today = record.today
        habit._today_hours = record.today_hours
        return habit


class HabitRecord(msgspec.Struct, array_like=True):
    """A habit as stored (compact: one JSON array per principal)."""

    first_us: int
    last_us: int
    hours: list[int]
    days: dict[str, list[int]]
    today: int
    today_hours: int


class PrincipalRecord(msgspec.Struct, array_like=True):
    user: str
    client_addr: str
    application_name: str
    table: str
    habit: HabitRecord


class StateFile(msgspec.Struct):
    """`baselines.json` in the state dir."""

    version: int
    learning_started_us: int | None
    principals: list[PrincipalRecord]


STATE_VERSION = 1
BASELINES_FILE = "baselines.json"


class StateError(Exception):
    """The baselines file cannot be used; the message is one line for the operator."""


@dataclass
class Baselines:
    """All habits, keyed by (user, client_addr, application_name, table), and learning's start."""

    learning_started_us: int | None = None
    habits: dict[tuple[str, str, str, str], Habit] = field(default_factory=dict)

    def save(self, directory: Path) -> Path:
        """Write `baselines.json` atomically (a crash leaves the old file or the new one)."""
        directory.mkdir(parents=True, exist_ok=True)
        state = StateFile(
            STATE_VERSION,
            self.learning_started_us,
            [PrincipalRecord(*key, habit.to_record()) for key, habit in self.habits.items()],
        )
        path = directory / BASELINES_FILE
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(msgspec.json.encode(state))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, directory: Path) -> Baselines:
        """Read `baselines.json`; a missing file is a fresh install (empty baselines).

        Raises:
            StateError: the file exists but cannot be read or is not ours. Starting afresh would
                silently restart learning (and mute first-seen signals), so it is not done.
        """
        path = directory / BASELINES_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise StateError(f"{path}: cannot read baselines: {exc.strerror}") from None
        try:
            state = msgspec.json.decode(raw, type=StateFile)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise StateError(
                f"{path}: corrupt baselines ({exc}); move it away to start learning afresh"
            ) from None
        if state.version != STATE_VERSION:
            raise StateError(f"{path}: baselines version {state.version}, expected {STATE_VERSION}")
        try:
            habits = {
                (p.user, p.client_addr, p.application_name, p.table): Habit.from_record(p.habit)
                for p in state.principals
            }
        except ValueError as exc:  # a day that is not a number
            raise StateError(
                f"{path}: corrupt baselines ({exc}); move it away to start learning afresh"
            ) from None
        return cls(state.learning_started_us, habits)
