"""Sliding sums over event time: how much in the last hour, the last day.

Sparse on purpose: a window keeps only the buckets that saw something, as small lists, so 100,000
principals that each read once cost a few hundred bytes apiece, not a ring of counters apiece.
"""

from __future__ import annotations

MINUTE_US = 60 * 1_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US

ROWS, MULTI, LOOKUPS, DENIED, SOFT = 1, 2, 3, 4, 5
"""The columns of a window (index 0 of a bucket is its number): all rows; rows of multi-row reads
known or firmly estimated; key lookups; denials; rows of filtered reads without LIMIT whose size
pgaudit did not log (a soft estimate)."""


class Window:
    """Sums of rows, multi-row reads, key lookups, denials and soft estimates over `span_us`.

    Buckets are `width_us` wide. The window ends at the latest time added or asked for (event
    time moves forward; a late value lands in the newest bucket).

    >>> w = Window(span_us=HOUR_US, width_us=5 * MINUTE_US)
    >>> w.add(0, 10, 10, 0, 0); w.add(30 * MINUTE_US, 5, 0, 1, 0); w.total(ROWS)
    15
    >>> w.advance(HOUR_US + MINUTE_US); w.total(ROWS)   # the first bucket has slid out
    5
    >>> w.advance(3 * HOUR_US); w.add(3 * HOUR_US, 1, 0, 0, 0); w.total(ROWS)
    1
    """

    __slots__ = ("span", "width", "buckets", "totals", "newest")

    def __init__(self, span_us: int, width_us: int) -> None:
        self.span = span_us // width_us
        self.width = width_us
        self.buckets: list[list[int]] = []
        self.totals = [0, 0, 0, 0, 0, 0]
        self.newest = -1

    def add(
        self, time_us: int, rows: int, multi: int, lookups: int, denied: int, soft: int = 0
    ) -> None:
        """Add one statement's numbers at `time_us`."""
        index = time_us // self.width
        buckets = self.buckets
        if not buckets or buckets[-1][0] < index:
            buckets.append([index, rows, multi, lookups, denied, soft])
            if index > self.newest:
                self.newest = index
                self._expire(index)
        else:
            bucket = buckets[-1]  # this bucket, or a late value: into the newest
            bucket[1] += rows
            bucket[2] += multi
            bucket[3] += lookups
            bucket[4] += denied
            bucket[5] += soft
        totals = self.totals
        totals[1] += rows
        totals[2] += multi
        totals[3] += lookups
        totals[4] += denied
        totals[5] += soft

    def total(self, column: int) -> int:
        """The sum of a column (ROWS, MULTI, LOOKUPS, DENIED, SOFT) over the window."""
        return self.totals[column]

    def advance(self, now_us: int) -> None:
        """Slide the window's end to `now_us` (no-op when it is not later)."""
        index = now_us // self.width
        if index > self.newest:
            self.newest = index
            self._expire(index)

    def series(self, column: int, now_us: int, slots: int) -> tuple[int, ...]:
        """The last `slots` buckets of a column ending at `now_us`, oldest first."""
        last = now_us // self.width
        out = [0] * slots
        for bucket in self.buckets:
            slot = slots - 1 - (last - bucket[0])
            if 0 <= slot < slots:
                out[slot] += bucket[column]
        return tuple(out)

    def _expire(self, newest: int) -> None:
        oldest = newest - self.span
        buckets = self.buckets
        totals = self.totals
        while buckets and buckets[0][0] <= oldest:
            gone = buckets.pop(0)
            totals[1] -= gone[1]
            totals[2] -= gone[2]
            totals[3] -= gone[3]
            totals[4] -= gone[4]
            totals[5] -= gone[5]
