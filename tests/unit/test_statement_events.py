"""pg_stat_statements' counts as access events when there is no audit log: one event per call
with the calls' average rows (a key lookup stays a lookup, a COPY a whole-table read), at most
EVENTS_PER_READ of them per statement and poll; a statement naming no watched table is not an
access."""

from __future__ import annotations

from collectors.statement_events import EVENTS_PER_READ, statement_events
from core.dbside import StatementReads
from core.events import EventKind


def _reads(calls: int, rows: int, tables: tuple[str, ...] = ("crm.clients",)) -> StatementReads:
    return StatementReads("app", "crm", 7, "select name from crm.clients where id = $1", tables,
                          1_000, 2_000, calls, rows)  # fmt: skip


def test_the_calls_rows_are_shared_among_the_events() -> None:
    events = statement_events([_reads(3, 5001)])
    assert [e.rows for e in events] == [1667, 1667, 1667]
    e = events[0]
    assert (e.kind, e.user, e.client_addr, e.command, e.object_name, e.time_us) == (
        EventKind.AUDIT, "app", "", "SELECT", "crm.clients", 2_000,
    )  # fmt: skip
    assert len({e.statement_id for e in events}) == 3  # never taken for one statement's echo


def test_a_busy_statement_is_told_in_a_bounded_number_of_lookups() -> None:
    events = statement_events([_reads(100_000, 100_000)])
    assert len(events) == EVENTS_PER_READ
    assert {e.rows for e in events} == {1}  # each a key lookup, never a bulk read


def test_statements_on_no_watched_table_are_not_accesses() -> None:
    assert statement_events([_reads(5, 50, tables=()), _reads(0, 0)]) == []
