"""A reader's alarms: the levels its reads are compared to, the reasons they raise, how long a
reason is held.

Levels come from the principal's habit and its peers' (the role), prepared once per principal per
hour (`arm`), so a read costs a few comparisons; a signal function (core.signals) is asked only
past a level. A raised reason is held for the quiet period after the read that raised it, then
lapses (`lapse`).
"""

from __future__ import annotations

from collections.abc import Callable

from core.baselines import MAX_HOUR_LOOKUPS, MAX_HOUR_MULTI, MAX_STATEMENT_ROWS, MULTI_ROWS
from core.events import AccessEvent
from core.findings import Code, Reason, Severity
from core.plans import how_measured
from core.readers import Reader
from core.rows import int_param
from core.shapes import Shape, ShapeKind
from core.signals import (
    Thresholds,
    bulk_read,
    expected_volume,
    new_principal_volume,
    offset_walk,
    sequential_keys,
    table_fraction,
    unusual_hour,
    unusual_hour_volume,
)
from core.windows import DAY_US, MULTI, SOFT

_NEVER = 1 << 62

__all__ = ["Alarms"]


class Alarms:
    """Arms readers each hour, checks their reads against the levels, holds the reasons raised."""

    __slots__ = ("t", "quiet_us", "learning")

    def __init__(
        self, thresholds: Thresholds, quiet_us: int, learning: Callable[[int], bool]
    ) -> None:
        self.t = thresholds
        self.quiet_us = quiet_us
        self.learning = learning
        """Whether event time `t` is inside the learning period."""

    # holding reasons ------------------------------------------------------------------------------

    def hold(self, r: Reader, reason: Reason | None, t: int) -> None:
        """Hold `reason` (if any) on the reader for the quiet period after `t`."""
        if reason is None:
            return
        until = t + self.quiet_us
        r.active[reason.code] = (reason, until)
        if until < r.next_expiry:
            r.next_expiry = until
        r.changed = True

    def lapse(self, r: Reader, t: int) -> None:
        """Drop the reasons held past their time (call when `t >= r.next_expiry`)."""
        held = r.active.get(Code.TABLE_FRACTION)
        if held is not None and held[1] <= t:
            r.window.advance(t)
            r.spent_hour = r.window.totals[MULTI]
            if r.day is not None:
                r.day.advance(t)
                r.spent_day = r.day.totals[MULTI]
        r.active = {code: held for code, held in r.active.items() if held[1] > t}
        r.next_expiry = min((held[1] for held in r.active.values()), default=_NEVER)
        r.reported = max((held[0].severity for held in r.active.values()), default=Severity.NONE)

    def forgive(self, r: Reader, note: str, t: int) -> None:
        """The principal was declared expected: drop its reasons (audit tampering is never a
        habit: kept) and let what it read so far stop counting towards window findings."""
        r.expected_note = note
        r.window.advance(t)
        r.spent_hour = r.window.totals[MULTI]
        if r.day is not None:
            r.day.advance(t)
            r.spent_day = r.day.totals[MULTI]
        r.active = {code: held for code, held in r.active.items() if code == Code.AUDIT_TAMPER}
        r.next_expiry = min((held[1] for held in r.active.values()), default=_NEVER)
        r.reported = max((held[0].severity for held in r.active.values()), default=Severity.NONE)
        r.changed = False

    # levels ---------------------------------------------------------------------------------------

    def arm(self, r: Reader, t: int, hour: int, size: int | None) -> None:
        """Once per principal per hour: the habit numbers that this hour's events compare to."""
        r.hour = hour
        habit = r.habit
        role = r.role
        day = t // DAY_US
        if role.day != day:
            role.refresh(day, t)
        own_hour = habit.past(t, MAX_HOUR_MULTI)
        own_day = habit.past(t, MULTI_ROWS)
        r.own_lookups = habit.past(t, MAX_HOUR_LOOKUPS)
        r.habitual_rows = habit.past(t, MAX_STATEMENT_ROWS)
        r.base_hour = max(own_hour or 0, role.base_hour)
        r.base_day = max(own_day or 0, role.base_day)
        learning = self.learning(t)
        th = self.t
        if size:
            beyond = 0 if learning else th.beyond_habit
            r.alarm_multi = int(
                max(
                    (th.learning_hour_critical if learning else th.hour_warning) * size,
                    beyond * r.base_hour,
                )
            )
            r.alarm_day = (
                _NEVER if learning else int(max(th.day_warning * size, beyond * r.base_day))
            )
        else:
            r.alarm_multi = r.alarm_day = _NEVER
        known = r.own_lookups is not None or role.base_lookups > 0
        r.alarm_lookups = (
            _NEVER
            if learning or not known
            else max(
                th.lookups_min, int(th.lookups_beyond * max(r.own_lookups or 0, role.base_lookups))
            )
        )
        if r.new_since is not None and t - r.new_since > th.new_principal_age_us:
            r.new_since = None
        hour_of_day = hour % 24
        r.unusual_hour = None
        if (
            not learning
            and r.expected_note is None
            and habit.past_days(t) >= th.unusual_min_days
            and habit.unusual(hour_of_day)
        ):
            r.unusual_hour = hour_of_day
            self.hold(r, unusual_hour(hour_of_day, habit.usual_hours(), habit.past_days(t)), t)

    # reads ----------------------------------------------------------------------------------------

    def multi_row(
        self,
        r: Reader,
        e: AccessEvent,
        shape: Shape,
        rows: int,
        size: int | None,
        estimated: bool,
        t: int,
        soft: bool = False,
    ) -> None:
        """A multi-row (or bulk) read, already counted in the reader's windows; `soft`: its rows
        are a guess (a filtered read pgaudit did not count)."""
        th = self.t
        if (size and rows >= th.bulk_info * size) or (
            shape.kind is ShapeKind.BULK and shape.limit is None and not size
        ):
            how = how_measured(shape, estimated, size, soft)
            reason = bulk_read(th, rows, size, how, r.habitual_rows, r.expected_note, soft)
            self.hold(r, reason, t)
        assert r.day is not None
        hour_rows, day_rows = r.window.totals[MULTI], r.day.totals[MULTI]
        if r.spent_hour or r.spent_day:
            # rows that already raised a finding which has since lapsed: only reads beyond them
            # can raise the window signals again (else the 24 h window re-pages all day)
            r.spent_hour = min(r.spent_hour, hour_rows)
            r.spent_day = min(r.spent_day, day_rows)
            hour_rows -= r.spent_hour
            day_rows -= r.spent_day
        if size:
            if r.expected_note is not None:
                self.hold(r, expected_volume(th, day_rows, size, r.base_day, r.expected_note), t)
            elif hour_rows >= r.alarm_multi or day_rows >= r.alarm_day:
                learning = self.learning(t)
                self.hold(
                    r,
                    table_fraction(
                        th,
                        hour_rows,
                        day_rows,
                        size,
                        r.base_hour,
                        r.base_day,
                        learning,
                        r.estimated,
                    ),
                    t,
                )
        # a newcomer's or an odd hour's reads count soft estimates too (filtered reads of unknown
        # size): they only ever give a warning
        read_hour = hour_rows + r.window.totals[SOFT]
        if r.new_since is not None:
            reason = new_principal_volume(th, read_hour, size, t - r.new_since)
            if reason is not None:
                # once: a newcomer's later volume is judged like anyone's (table_fraction)
                self.hold(r, reason, t)
                r.new_since = None
        if r.unusual_hour is not None:
            self.hold(
                r,
                unusual_hour_volume(th, r.unusual_hour, r.habit.usual_hours(), read_hour, size),
                t,
            )
        if shape.kind is ShapeKind.BULK:
            self._walk(r, shape, e, t, size)

    def keyset_page(
        self, r: Reader, statement: str | None, parameters: tuple[str, ...] | None
    ) -> bool:
        """Whether a filtered read with LIMIT is the next page of a keyset walk: the same text
        again with a larger first number among its parameters (`WHERE id > $1 ... LIMIT n`).
        A page of a walk is full; a lone filtered read with LIMIT may return far fewer rows."""
        params = parameters or ()
        value = next(
            (v for i in range(len(params)) if (v := int_param(params, i)) is not None), None
        )
        if value is None or statement is None:
            return False
        walk = r.keyset
        if walk is not None and walk[0] == statement and value > walk[1]:
            r.keyset = (statement, value)
            return True
        r.keyset = (statement, value)
        return False

    def key(self, r: Reader, key: int, t: int, size: int | None) -> None:
        """Key lookups walking consecutive keys, up or down, however interleaved with others;
        and keys a fixed step apart (every other id...), one after the other.

        `r.runs` maps the next key a run expects to its length, negative for a run walking down.
        A key that continues no run starts one each way. Random lookups leave runs of one,
        dropped when the map grows.
        """
        step = r.step
        delta = key - step[0]
        step[0] = key
        if delta == step[1]:
            step[2] += 1
            # a step of one is the runs' business (they also follow it when interleaved)
            if step[2] >= self.t.sequential_run and step[2] % 10 == 0 and 1 < abs(delta) <= 1000:
                length = step[2]
                first = key - delta * (length - 1)
                reason = sequential_keys(self.t, length, first, key, t - step[3], size, delta)
                self.hold(r, reason, t)
        else:
            step[1], step[2], step[3] = delta, 2, t
        runs = r.runs
        found = runs.pop(key, 0)
        if found > 0:
            length = found + 1
            runs[key + 1] = length
            first, mark = key - found, key - found
        elif found < 0:
            length = 1 - found
            runs[key - 1] = -length
            first = key - found
            mark = ~first  # the starts of runs walking down, apart from those walking up
        else:
            runs[key + 1] = 1
            runs[key - 1] = -1
            length = 0
        if length:
            if length == 2:
                r.run_starts[mark] = t
            if length >= self.t.sequential_run and length % 10 == 0:
                since = r.run_starts.get(mark, t)
                self.hold(r, sequential_keys(self.t, length, first, key, t - since, size), t)
        if len(runs) > 1024:
            # keep the real runs (all of them, unless hundreds are interleaved to hide one:
            # then start over)
            kept = {k: v for k, v in runs.items() if v > 1 or v < -1}
            if len(kept) >= 256:
                kept = {}
            starts = r.run_starts
            r.runs = kept
            marks = [k - v if v > 0 else ~(k - v) for k, v in kept.items()]
            r.run_starts = {m: starts[m] for m in marks if m in starts}

    def _walk(self, r: Reader, shape: Shape, e: AccessEvent, t: int, size: int | None) -> None:
        """LIMIT/OFFSET pages that follow each other."""
        limit, offset = shape.limit, shape.offset
        params = e.parameters
        if params is not None:
            if limit is None and shape.limit_param is not None:
                limit = int_param(params, shape.limit_param)
            if offset is None and shape.offset_param is not None:
                offset = int_param(params, shape.offset_param)
        if limit is None or offset is None or limit <= 0:
            return
        walk = r.walk
        if walk is not None and offset == walk[1]:
            walk[0] += 1
            walk[1] = offset + limit
        else:
            walk = r.walk = [1, offset + limit, offset, t]  # pages, next offset, start, since
        reason = offset_walk(self.t, walk[0], walk[2], walk[1], limit, t - walk[3], size)
        self.hold(r, reason, t)
