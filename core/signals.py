"""The signals: pure functions from numbers to a `Reason` (or None), each explaining itself.

The engine gathers the numbers (rows, fractions, habits) and asks these; they do no I/O and keep no
state, so each is tested with a table of cases. Thresholds are fractions of the watched table.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.findings import Code, Reason, Severity, band_score
from core.windows import DAY_US


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where each signal starts. Fractions are of the table's rows."""

    bulk_critical: float = 0.5
    """One statement reading half the table pages."""
    gap_critical: float = 0.5
    """Half the table read without the audit log accounting for it pages."""
    gap_warning: float = 0.05
    gap_min: int = 50
    """Tuples: a smaller gap is not worth a look, whatever the table's size."""
    gap_unsized: int = 1000
    """Tuples, for a table whose size is unknown (never analysed)."""
    bulk_warning: float = 0.1
    bulk_info: float = 0.02
    hour_critical: float = 0.3
    """Multi-row reads adding up to 30% of the table in an hour (and beyond habit) page."""
    hour_warning: float = 0.1
    day_critical: float = 0.5
    day_warning: float = 0.25
    learning_hour_critical: float = 0.5
    """While learning there is no habit to compare with: only half the table in an hour pages."""
    beyond_habit: float = 3.0
    """Window signals fire only this many times beyond the principal's (and peers') busiest."""
    expected_warning: float = 3.0
    """An expected principal is raised when it reads this many times its habit (or the table)."""
    expected_critical: float = 10.0
    new_principal_fraction: float = 0.01
    new_principal_rows: int = 500
    new_principal_age_us: int = DAY_US
    unusual_hour_fraction: float = 0.05
    unusual_hour_rows: int = 1000
    """Used instead of the fraction when the table's size is unknown."""
    unusual_min_days: int = 2
    """Days of history before an hour can be called unusual for a principal."""
    sequential_run: int = 30
    sequential_critical: float = 0.25
    walk_pages: int = 5
    walk_warning: float = 0.1
    walk_critical: float = 0.3
    denied_warning: int = 3
    lookups_beyond: float = 5.0
    lookups_min: int = 500
    filtered_estimate: float = 0.05
    """Rows assumed for a filtered statement without LIMIT when pgaudit did not log rows."""


def pct(fraction: float) -> str:
    """A fraction as a short percentage.

    >>> pct(0.5), pct(0.0123), pct(0.0004), pct(2.5)
    ('50%', '1.2%', '0.04%', '250%')
    """
    value = fraction * 100
    if value >= 10:
        return f"{value:.0f}%"
    if value >= 1:
        return f"{value:.1f}%"
    return f"{value:.2g}%"


def duration(us: int) -> str:
    """A span of event time, short.

    >>> duration(45_000_000), duration(300_000_000), duration(5_400_000_000)
    ('45s', '5m', '1h30m')
    """
    seconds = us // 1_000_000
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest:02d}m" if rest else f"{hours}h"


def _strength(value: float, low: float, high: float) -> float:
    return (value - low) / (high - low) if high > low else 1.0


def bulk_read(
    t: Thresholds,
    rows: int,
    table_rows: int | None,
    how: str,
    habitual_rows: int | None,
    expected: str | None,
    guess: bool = False,
) -> Reason | None:
    """One statement read a large part of the table.

    `how` says where the row count came from ("logged by pgaudit", "estimated: SELECT * without
    WHERE"). A read no larger than the principal's own largest before, or by an expected
    principal, is only noted (info). A `guess` (a filtered read of unknown size) is at most a
    warning: it may have read far fewer rows.
    """
    if table_rows:
        fraction = rows / table_rows
    elif how.startswith("whole table"):
        fraction = 1.0
    else:
        return None
    if fraction < t.bulk_info:
        return None
    share = f"{rows:,} rows ({pct(fraction)} of the table)" if table_rows else "the whole table"
    verb = "may have read up to" if guess else "read"
    detail = f"one statement {verb} {share}, {how}"
    if fraction >= t.bulk_critical and not guess:
        severity, strength = Severity.CRITICAL, _strength(fraction, t.bulk_critical, 1.0)
    elif fraction >= t.bulk_critical:
        severity, strength = Severity.WARNING, 1.0
    elif fraction >= t.bulk_warning:
        severity, strength = Severity.WARNING, _strength(fraction, t.bulk_warning, t.bulk_critical)
    else:
        severity, strength = Severity.INFO, _strength(fraction, t.bulk_info, t.bulk_warning)
    if severity > Severity.INFO:
        if expected is not None:
            return Reason(
                Code.EXPECTED, Severity.INFO, 20, f"{detail}; expected principal ({expected})"
            )
        if habitual_rows and 0 < rows <= habitual_rows * 1.25:
            return Reason(
                Code.BULK_READ,
                Severity.INFO,
                25,
                f"{detail}; habitual: it read up to {habitual_rows:,} rows in one statement on "
                "earlier days",
            )
    return Reason(Code.BULK_READ, severity, band_score(severity, strength), detail)


def table_fraction(
    t: Thresholds,
    hour_rows: int,
    day_rows: int,
    table_rows: int,
    base_hour: int,
    base_day: int,
    learning: bool,
    estimated: bool,
) -> Reason | None:
    """Multi-row reads over the last hour or day add up to much of the table, beyond habit.

    `base_hour`/`base_day`: the busiest hour/day of the principal and its peers on earlier days
    (0 when none is known).
    """
    f_hour, f_day = hour_rows / table_rows, day_rows / table_rows
    note = " (partly estimated)" if estimated else ""
    if learning:
        if f_hour >= t.learning_hour_critical:
            return Reason(
                Code.TABLE_FRACTION,
                Severity.CRITICAL,
                band_score(Severity.CRITICAL, _strength(f_hour, t.learning_hour_critical, 1.0)),
                f"read {hour_rows:,} rows ({pct(f_hour)} of the table) in the last hour{note}; "
                "still learning habits",
            )
        return None
    beyond = t.beyond_habit
    found: tuple[Severity, float, str] | None = None
    for rows, fraction, base, span, warn, crit in (
        (hour_rows, f_hour, base_hour, "hour", t.hour_warning, t.hour_critical),
        (day_rows, f_day, base_day, "24 h", t.day_warning, t.day_critical),
    ):
        if fraction < warn or rows < beyond * base:
            continue
        severity = Severity.CRITICAL if fraction >= crit else Severity.WARNING
        strength = (
            _strength(fraction, crit, 1.0) if fraction >= crit else _strength(fraction, warn, crit)
        )
        habit = f"busiest {span} before: {base:,} rows" if base else "no such reads before"
        detail = (
            f"read {rows:,} rows ({pct(fraction)} of the table) in the last {span}{note}; {habit}"
        )
        if found is None or severity > found[0]:
            found = (severity, strength, detail)
    if found is None:
        return None
    return Reason(Code.TABLE_FRACTION, found[0], band_score(found[0], found[1]), found[2])


def expected_volume(
    t: Thresholds, day_rows: int, table_rows: int, base_day: int, note: str
) -> Reason | None:
    """An expected principal reading far beyond its own habit (or the table, before any habit)."""
    reference = max(base_day, table_rows)
    ratio = day_rows / reference
    if ratio < t.expected_warning:
        return None
    severity = Severity.CRITICAL if ratio >= t.expected_critical else Severity.WARNING
    strength = _strength(ratio, t.expected_warning, t.expected_critical)
    return Reason(
        Code.TABLE_FRACTION,
        severity,
        band_score(severity, strength if severity is Severity.WARNING else 1.0),
        f"expected principal ({note}) read {day_rows:,} rows in 24 h, {ratio:.1f}x its usual "
        f"{reference:,}",
    )


def new_principal_volume(
    t: Thresholds, hour_rows: int, table_rows: int | None, age_us: int
) -> Reason | None:
    """A principal first seen recently (after learning) already pulling many rows."""
    if age_us > t.new_principal_age_us:
        return None
    floor = t.new_principal_rows
    if table_rows:
        floor = max(floor, int(t.new_principal_fraction * table_rows))
    if hour_rows < floor:
        return None
    share = f" ({pct(hour_rows / table_rows)} of the table)" if table_rows else ""
    return Reason(
        Code.NEW_PRINCIPAL_VOLUME,
        Severity.WARNING,
        band_score(Severity.WARNING, hour_rows / (10 * floor)),
        f"first seen {duration(age_us)} ago and already read {hour_rows:,} rows{share} in the "
        "last hour",
    )


def unusual_hour_volume(
    t: Thresholds, hour: int, usual: list[int], hour_rows: int, table_rows: int | None
) -> Reason | None:
    """Many rows read at an hour of the day this principal never works."""
    floor = int(t.unusual_hour_fraction * table_rows) if table_rows else t.unusual_hour_rows
    if hour_rows < max(floor, 1):
        return None
    share = f" ({pct(hour_rows / table_rows)} of the table)" if table_rows else ""
    return Reason(
        Code.UNUSUAL_HOUR,
        Severity.WARNING,
        band_score(Severity.WARNING, hour_rows / (4 * max(floor, 1))),
        f"read {hour_rows:,} rows{share} at {hour:02d}:00 UTC, an hour it never works "
        f"(usually {hours_text(usual)})",
    )


def hours_text(hours: list[int]) -> str:
    """Hours of the day as ranges.

    >>> hours_text([8, 9, 10, 11, 14, 15]), hours_text([2]), hours_text([])
    ('08:00-12:00, 14:00-16:00 UTC', '02:00-03:00 UTC', 'never')
    """
    if not hours:
        return "never"
    spans: list[tuple[int, int]] = []
    for h in sorted(hours):
        if spans and spans[-1][1] == h:
            spans[-1] = (spans[-1][0], h + 1)
        else:
            spans.append((h, h + 1))
    return ", ".join(f"{a:02d}:00-{b % 24 if b == 24 else b:02d}:00" for a, b in spans) + " UTC"


def sequential_keys(
    t: Thresholds,
    length: int,
    first: int,
    last: int,
    span_us: int,
    table_rows: int | None,
    stride: int = 1,
) -> Reason | None:
    """Key lookups walking consecutive keys (or keys a fixed step apart): an enumeration."""
    if length < t.sequential_run:
        return None
    severity = Severity.WARNING
    share = ""
    if table_rows:
        fraction = length / table_rows
        share = f", {pct(fraction)} of the table"
        if fraction >= t.sequential_critical:
            severity = Severity.CRITICAL
    strength = min(1.0, length / (10 * t.sequential_run))
    return Reason(
        Code.SEQUENTIAL_KEYS,
        severity,
        band_score(severity, strength),
        f"{length:,} key lookups on "
        f"{'consecutive keys' if abs(stride) == 1 else f'keys {abs(stride)} apart'} "
        f"{first}..{last} in {duration(span_us)}{share}: enumeration",
    )


def offset_walk(
    t: Thresholds,
    pages: int,
    start: int,
    end: int,
    limit: int,
    span_us: int,
    table_rows: int | None,
) -> Reason | None:
    """LIMIT/OFFSET pages without WHERE walking through the table."""
    if pages < t.walk_pages:
        return None
    covered = end - start
    if table_rows:
        fraction = covered / table_rows
        if fraction < t.walk_warning:
            return None
        severity = Severity.CRITICAL if fraction >= t.walk_critical else Severity.WARNING
        share = f" ({pct(fraction)} of the table)"
        strength = _strength(fraction, t.walk_warning, t.walk_critical)
    else:
        if pages < 4 * t.walk_pages:
            return None
        severity, share, strength = Severity.WARNING, "", 0.5
    return Reason(
        Code.OFFSET_WALK,
        severity,
        band_score(severity, strength),
        f"{pages} pages of LIMIT {limit:,} walked OFFSET {start:,} to {end:,}{share} in "
        f"{duration(span_us)}",
    )


def denied(t: Thresholds, count_hour: int, command: str, relation: str) -> Reason:
    """Statements refused with permission denied (42501): probing for access."""
    severity = Severity.WARNING if count_hour >= t.denied_warning else Severity.INFO
    strength = min(1.0, count_hour / (5 * t.denied_warning))
    what = f"{command} on {relation}" if command else relation
    return Reason(
        Code.DENIED,
        severity,
        band_score(severity, strength),
        f"{count_hour} statement(s) refused with permission denied in the last hour (last: {what})",
    )


def lookup_volume(
    t: Thresholds, lookups_hour: int, own: int | None, peers: int | None
) -> Reason | None:
    """Far more key lookups in an hour than this principal's and its peers' busiest hour."""
    base = max(own or 0, peers or 0)
    if own is None and peers is None:
        return None
    floor = max(t.lookups_min, int(t.lookups_beyond * base))
    if lookups_hour < floor:
        return None
    parts = []
    if own is not None:
        parts.append(f"its busiest hour before: {own:,}")
    if peers is not None:
        parts.append(f"its peers' busiest: {peers:,}")
    return Reason(
        Code.VOLUME,
        Severity.WARNING,
        band_score(Severity.WARNING, lookups_hour / (4 * floor)),
        f"{lookups_hour:,} key lookups in the last hour ({'; '.join(parts)})",
    )


def tamper(detail: str, severity: Severity = Severity.CRITICAL) -> Reason:
    """The audit set-up was changed: critical at that record (a server restart: a warning)."""
    return Reason(Code.AUDIT_TAMPER, severity, 100 if severity >= Severity.CRITICAL else 60, detail)


def audit_gap(t: Thresholds, unaudited: int, size: int | None, detail: str) -> Reason | None:
    """Tuples read that the audit log does not account for: critical when most of the table,
    a warning from a few percent of it."""
    if size:
        fraction = unaudited / size
        if fraction >= t.gap_critical:
            return Reason(
                Code.AUDIT_GAP, Severity.CRITICAL, band_score(Severity.CRITICAL, fraction), detail
            )
        if fraction >= t.gap_warning:
            strength = (fraction - t.gap_warning) / (t.gap_critical - t.gap_warning)
            return Reason(Code.AUDIT_GAP, Severity.WARNING, band_score(Severity.WARNING, strength),
                          detail)  # fmt: skip
        return None
    if unaudited >= t.gap_unsized:
        return Reason(Code.AUDIT_GAP, Severity.WARNING, band_score(Severity.WARNING, 0.5), detail)
    return None


def first_seen(detail: str) -> Reason:
    """A principal never seen before (raised only after learning)."""
    return Reason(Code.FIRST_SEEN, Severity.INFO, 20, detail)


def new_address(detail: str) -> Reason:
    """A known user from a client address never seen for it (raised only after learning)."""
    return Reason(Code.NEW_ADDRESS, Severity.INFO, 25, detail)


def unusual_hour(hour: int, usual: list[int], days: int) -> Reason:
    """Active at an hour of the day never seen for this principal (info on its own)."""
    return Reason(
        Code.UNUSUAL_HOUR,
        Severity.INFO,
        20,
        f"active at {hour:02d}:00 UTC; usually {hours_text(usual)} (seen on {days} days)",
    )
