"""Which findings page, and how often: the alert rules, flood control and quiet hours. Pure.

One alert per (rule, principal, table): later findings about the same reader are grouped under
it (counted, not paged again) until it resolves. New alerts are bounded per reader (user, client,
application, whatever the table) and overall per flood window; what flood control holds back is
counted, per reader (for a bounded number of readers: the rest share one count) and in total,
and the count rides on the reader's next page. Quiet hours delay the rules' pages to the end of
the quiet period; they never delay an operator's page.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from core.findings import PrincipalKey, Severity
from core.settings import AlertsSettings, parse_quiet_hours

MINUTE_US: Final = 60_000_000
DAY_MINUTES: Final = 24 * 60

_PAGE_ON: Final = {"critical": Severity.CRITICAL, "warning": Severity.WARNING, "none": None}


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


@dataclass(frozen=True, slots=True)
class Rules:
    """The `[alerts]` rule settings, in microseconds."""

    page_on: Severity | None = Severity.CRITICAL
    """Findings at or above this page on their own (None: operators only)."""
    renotify_us: int = 4 * 3600 * 1_000_000
    """0: never."""
    resolve_after_us: int = 3600 * 1_000_000
    flood_window_us: int = 3600 * 1_000_000
    flood_per_principal: int = 3
    flood_total: int = 20
    quiet: tuple[int, int] | None = None
    """Quiet hours as minutes of the UTC day (start, end); None: none."""

    @classmethod
    def from_settings(cls, settings: AlertsSettings) -> Rules:
        """From `[alerts]`."""
        return cls(
            page_on=_PAGE_ON[settings.page_on],
            renotify_us=_us(settings.renotify.total_seconds()),
            resolve_after_us=_us(settings.resolve_after.total_seconds()),
            flood_window_us=_us(settings.flood_window.total_seconds()),
            flood_per_principal=settings.flood_per_principal,
            flood_total=settings.flood_total,
            quiet=parse_quiet_hours(settings.quiet_hours) if settings.quiet_hours else None,
        )

    @property
    def name(self) -> str:
        """The rule's name in alert keys and labels: the severity it pages on."""
        return self.page_on.label if self.page_on is not None else "none"

    def pages(self, severity: Severity) -> bool:
        """Whether a finding of this severity pages on its own."""
        return self.page_on is not None and severity >= self.page_on

    def quiet_until(self, now_us: int) -> int | None:
        """The end of the quiet period `now_us` falls in, or None outside quiet hours.

        >>> r = Rules(quiet=(22 * 60, 7 * 60))
        >>> day = 20_000 * 1440 * MINUTE_US
        >>> r.quiet_until(day + 23 * 60 * MINUTE_US) == day + (24 + 7) * 60 * MINUTE_US
        True
        >>> r.quiet_until(day + 12 * 60 * MINUTE_US) is None
        True
        """
        if self.quiet is None:
            return None
        start, end = self.quiet
        minute = (now_us // MINUTE_US) % DAY_MINUTES
        inside = start <= minute < end if start < end else minute >= start or minute < end
        if not inside:
            return None
        wait = (end - minute) % DAY_MINUTES
        return (now_us // MINUTE_US + wait) * MINUTE_US


def reader_of(principal: PrincipalKey) -> tuple[str, str, str]:
    """Who, whatever the table: flood control counts per reader."""
    return (principal.user, principal.client_addr, principal.application_name)


class FloodGate:
    """Sliding-window counts of new alerts, per reader and overall, and what was held back.

    Readers are whoever connects (application_name is theirs to choose), so nothing here grows
    with them: window entries that expired are swept, and past `HELD_READERS` readers what is
    held back is folded into one count (`held_others`), keeping `suppressed` exact.
    """

    HELD_READERS: Final = 10_000
    """Readers whose held-back count is kept apiece; the rest share `held_others`."""
    SWEEP_EVERY: Final = 1_000
    """`admit` sweeps expired entries at least every this many calls."""

    def __init__(self, rules: Rules, suppressed: int = 0) -> None:
        self.rules = rules
        self._all: deque[int] = deque()
        self._by_reader: dict[tuple[str, str, str], deque[int]] = {}
        self.suppressed = suppressed
        """Findings held back in total (kept across restarts by the caller)."""
        self.held: dict[tuple[str, str, str], int] = {}
        """Findings held back per reader since its last page (at most `HELD_READERS`)."""
        self.held_others = 0
        """Findings held back from readers `held` had no room for: with `held`, what was
        held back since the last pages."""
        self._calls = 0
        self._next_sweep = 0

    def admit(self, principal: PrincipalKey, now_us: int) -> bool:
        """Whether a new alert about `principal` may page now; counts it either way."""
        self._calls += 1
        if self._calls >= self.SWEEP_EVERY or now_us >= self._next_sweep:
            self.sweep(now_us)
        horizon = now_us - self.rules.flood_window_us
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        reader = reader_of(principal)
        mine = self._by_reader.get(reader)
        if mine is not None:
            while mine and mine[0] <= horizon:
                mine.popleft()
            if not mine:
                del self._by_reader[reader]
                mine = None
        if len(self._all) >= self.rules.flood_total or (
            mine is not None and len(mine) >= self.rules.flood_per_principal
        ):
            self.suppressed += 1
            if reader in self.held or len(self.held) < self.HELD_READERS:
                self.held[reader] = self.held.get(reader, 0) + 1
            else:
                self.held_others += 1
            return False
        self._all.append(now_us)
        self._by_reader.setdefault(reader, deque()).append(now_us)
        return True

    def remember(self, principal: PrincipalKey, at_us: int) -> None:
        """A page made before a restart (oldest first): it counts in the windows again, so a
        restart in the middle of a flood does not open the gate."""
        self._all.append(at_us)
        self._by_reader.setdefault(reader_of(principal), deque()).append(at_us)

    def sweep(self, now_us: int) -> None:
        """Drop the window entries that expired by `now_us`; when `held` is full, fold the
        counts of readers with no page in the window into `held_others`, to make room."""
        self._calls = 0
        self._next_sweep = now_us + max(self.rules.flood_window_us // 4, 1)
        horizon = now_us - self.rules.flood_window_us
        # a reader's entries are in time order: only its newest tells whether any is live
        self._by_reader = {r: q for r, q in self._by_reader.items() if q[-1] > horizon}
        if len(self.held) >= self.HELD_READERS:
            idle = [r for r in self.held if r not in self._by_reader]
            for reader in idle:
                self.held_others += self.held.pop(reader)

    def release(self, principal: PrincipalKey) -> int:
        """The count held back for this reader, handed to its page (and reset)."""
        return self.held.pop(reader_of(principal), 0)
