"""Per-principal live state: the reader, its role (peers), and the session it reads in."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.baselines import LOOKUPS, MAX_HOUR_LOOKUPS, MAX_HOUR_MULTI, MULTI_ROWS, Habit
from core.findings import SCORE_BANDS, PrincipalKey, Reason, Severity
from core.windows import Window

_NEVER = 1 << 62

__all__ = ["LOOKUPS", "Reader", "Role", "Session"]


@dataclass(slots=True)
class Session:
    """The statement a session is on: to skip the OBJECT record repeating a SESSION record, and to
    know the text behind `<previously logged>`."""

    statement_id: int | None
    substatement_id: int | None
    text: str | None
    tables: set[str] = field(default_factory=set)


class Role:
    """The principals of one database user on one table: its peers, and the addresses it uses."""

    __slots__ = ("habits", "addresses", "day", "base_hour", "base_day", "base_lookups")

    def __init__(self) -> None:
        self.habits: dict[str, Habit] = {}
        """The habits of its principals (live or only remembered), by client address and
        application_name: peers are known from the baselines before they show up again."""
        self.addresses: set[str] = set()
        self.day = -1
        self.base_hour = 0
        """The busiest hour of multi-row reads of any of its principals on earlier days."""
        self.base_day = 0
        self.base_lookups = 0
        """The busiest hour of key lookups of any of its principals on earlier days."""

    def refresh(self, day: int, now_us: int) -> None:
        """Recompute the peers' habits (once per day of event time)."""
        self.day = day
        hour = whole_day = lookups = 0
        for habit in self.habits.values():
            hour = max(hour, habit.past(now_us, MAX_HOUR_MULTI) or 0)
            whole_day = max(whole_day, habit.past(now_us, MULTI_ROWS) or 0)
            lookups = max(lookups, habit.past(now_us, MAX_HOUR_LOOKUPS) or 0)
        self.base_hour, self.base_day, self.base_lookups = hour, whole_day, lookups


class Reader:
    """One principal reading one table: live windows, habit, active reasons, reported severity."""

    __slots__ = (
        "key",
        "habit",
        "role",
        "window",
        "day",
        "last_us",
        "expected_note",
        "statements",
        "denied",
        "estimated",
        "runs",
        "step",
        "keyset",
        "run_starts",
        "walk",
        "active",
        "next_expiry",
        "reported",
        "score",
        "changed",
        "hour",
        "base_hour",
        "base_day",
        "own_lookups",
        "habitual_rows",
        "alarm_multi",
        "alarm_day",
        "alarm_lookups",
        "new_since",
        "unusual_hour",
        "spent_hour",
        "spent_day",
        "hour_statements",
        "hour_multi",
        "hour_lookups",
        "hour_max_rows",
    )

    def __init__(
        self,
        key: PrincipalKey,
        habit: Habit,
        role: Role,
        window: Window,
        seen_us: int,
        expected_note: str | None,
    ) -> None:
        self.key = key
        self.habit = habit
        self.role = role
        self.window = window
        """The last hour in 5-minute buckets: rows, multi-row reads, key lookups, denials."""
        self.day: Window | None = None
        """The last 24 h in hourly buckets, made on the first multi-row read."""
        self.last_us = seen_us
        self.expected_note = expected_note
        self.statements = 0
        self.denied = 0
        self.estimated = False
        self.runs: dict[int, int] = {}
        """Sequential-key runs: next key expected -> length of the run so far."""
        self.keyset: tuple[str, int] | None = None
        """The last filtered page with LIMIT: its text and first number (keyset walks)."""
        self.step = [0, 0, 0, 0]
        """Keys a fixed step apart, one after the other: [last key, step, length, since]."""
        self.run_starts: dict[int, int] = {}
        """First key of a run (of two or more) -> event time of its second key."""
        self.walk: list[int] | None = None
        """LIMIT/OFFSET walk: [pages, next offset, start offset, start time]."""
        self.active: dict[str, tuple[Reason, int]] = {}
        """Reasons held, by code, with the event time they lapse at."""
        self.next_expiry = _NEVER
        self.reported = Severity.NONE
        self.score = 0
        self.changed = False
        self.hour = -1
        self.base_hour = 0
        self.base_day = 0
        self.own_lookups: int | None = None
        self.habitual_rows: int | None = None
        self.alarm_multi = _NEVER
        self.alarm_day = _NEVER
        self.alarm_lookups = _NEVER
        self.new_since: int | None = None
        """Event time it was first seen, while that is recent (after learning)."""
        self.unusual_hour: int | None = None
        """The hour of the day, while the principal is active at an hour it never works."""
        self.hour_statements = 0
        """This hour's counts, handed to the habit when the next hour starts."""
        self.hour_multi = 0
        self.hour_lookups = 0
        self.hour_max_rows = 0
        self.spent_hour = 0
        """Multi-row reads of the hour window that raised a window finding since lapsed."""
        self.spent_day = 0

    def hand_over(self) -> None:
        """Give this hour's counts to the habit (at the next hour, or before saving)."""
        if self.hour_statements:
            self.habit.add_hour(
                self.hour,
                self.hour_statements,
                self.hour_multi,
                self.hour_lookups,
                self.hour_max_rows,
            )
            self.habit.last_us = max(self.habit.last_us, self.last_us)
            self.hour_statements = self.hour_multi = self.hour_lookups = self.hour_max_rows = 0

    def assess(self) -> tuple[Severity, int, tuple[Reason, ...]]:
        """Severity (the worst reason), score (the strongest, a little more for each other
        reason, within the severity's band) and the reasons, worst first."""
        if not self.active:
            self.score = 0
            return Severity.NONE, 0, ()
        reasons = sorted(
            (held[0] for held in self.active.values()),
            key=lambda r: (r.severity, r.score),
            reverse=True,
        )
        top = reasons[0]
        others = sum(1 for r in reasons[1:] if r.severity >= Severity.INFO)
        score = min(SCORE_BANDS[top.severity][1], top.score + 3 * others)
        self.score = score
        return top.severity, score, tuple(reasons)

    def rank(self) -> tuple[int, int, int]:
        """Sort key: most anomalous first (severity, score, then the most recent)."""
        return (self.reported, self.score, self.last_us)
