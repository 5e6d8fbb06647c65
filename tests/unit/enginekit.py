"""Building blocks for engine tests: events at given times, an engine with a known table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.engine import Engine, EngineConfig
from core.events import AccessEvent, EventKind, us_from_utc
from core.findings import Finding
from core.settings import ExpectedPrincipal
from core.tables import TableName

TABLE = "crm.client_list"
ROWS = 50_000
MONDAY = datetime(2026, 11, 2, tzinfo=UTC)
"""Day 0 of the tests' event time (a Monday, 00:00 UTC)."""

_statement_ids: dict[str, int] = {}


def at(day: float = 0, hour: float = 0, minute: float = 0, second: float = 0) -> int:
    """Event time (µs) `day` days, `hour` hours... after MONDAY."""
    return us_from_utc(MONDAY + timedelta(days=day, hours=hour, minutes=minute, seconds=second))


def ev(
    time_us: int,
    statement: str | None = "SELECT * FROM crm.client_list WHERE id = $1",
    *,
    user: str = "app",
    addr: str = "10.0.0.1",
    app: str = "crm-web",
    params: tuple[str, ...] | None = None,
    rows: int | None = None,
    session: str = "s1",
    statement_id: int | None = None,
    substatement_id: int = 1,
    audit_type: str = "OBJECT",
    kind: EventKind = EventKind.AUDIT,
    class_: str = "READ",
    command: str = "SELECT",
    object_name: str = TABLE,
) -> AccessEvent:
    """One access event; statement ids count up per session unless given."""
    if statement_id is None:
        statement_id = _statement_ids[session] = _statement_ids.get(session, 0) + 1
    return AccessEvent(
        time_us,
        kind,
        user,
        "crm",
        addr,
        app,
        session,
        audit_type if kind is not EventKind.DENIED else None,
        statement_id if kind is not EventKind.DENIED else None,
        substatement_id if kind is not EventKind.DENIED else None,
        class_,
        command,
        "TABLE",
        object_name,
        statement,
        params,
        rows,
    )


def engine(
    *,
    rows: int | None = ROWS,
    learning_hours: float = 24,
    expected: tuple[ExpectedPrincipal, ...] = (),
) -> Engine:
    """An engine watching crm.client_list (`rows` rows) with the default thresholds."""
    return Engine(
        EngineConfig(
            tables=(TableName.parse(TABLE, rows),),
            expected=expected,
            learning_period_us=int(learning_hours * 3600 * 1_000_000),
        )
    )


def app_day(
    day: int, *, per_hour: int = 60, addr: str = "10.0.0.1", start_key: int = 7
) -> list[AccessEvent]:
    """A day of the app's key lookups (random-looking keys), busier in the day than at night."""
    out: list[AccessEvent] = []
    key = start_key
    for hour in range(24):
        count = per_hour if 8 <= hour < 20 else per_hour // 5
        for i in range(count):
            key = (key * 7919 + 13) % ROWS
            out.append(
                ev(at(day, hour, second=i * 3600 / max(count, 1)), params=(str(key),), addr=addr)
            )
    return out


def run(e: Engine, events: list[AccessEvent]) -> list[Finding]:
    """Process events in time order; the findings raised."""
    return e.process(sorted(events, key=lambda x: x.time_us))


def codes(finding: Finding) -> list[str]:
    return [r.code for r in finding.reasons]
