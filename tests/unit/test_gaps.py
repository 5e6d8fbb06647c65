"""Audit gaps and database-side tampering in the engine: the table's own statistics against the
audit log. A read the audit log misses (a COPY with log_rows on, a SECURITY DEFINER function) is
a gap laid at the role whose statistics show it; a count(*) or an hourly aggregate, which scans
the whole table and returns a row, is not; a lagging audit tail is never a gap."""

from __future__ import annotations

import pytest

from core.dbside import Backend, Observations, StatementReads, TableReads, Tampered
from core.engine import UNKNOWN_USER, Engine
from core.findings import Code, Finding, Severity
from core.gaps import SLACK_US
from core.settings import ExpectedPrincipal
from core.sources import SourceHealth
from tablewatch.live import LiveEngine
from tests.unit.enginekit import ROWS, TABLE, at, engine, ev

SECOND = 1_000_000


def reads(
    since: int, until: int, *, scans: int = 0, seq: int = 0, idx: int = 0, size: int = ROWS
) -> Observations:
    return Observations(table_reads=(TableReads(TABLE, since, until, scans, seq, idx, size),))


def caught_up(e: Engine, obs: Observations, until: int) -> list[Finding]:
    """Observe, with the audit log read well past the window."""
    return e.observe(obs, until, until + SLACK_US + SECOND)


def watching(t0: int) -> Engine:
    """An engine whose database sources started polling just before `t0` (the audited
    statements count as credits from the first observation on)."""
    e = engine(learning_hours=0)
    assert e.observe(Observations(), t0 - SECOND, 0) == []
    return e


def gap_of(found: list[Finding]) -> Finding:
    hits = [f for f in found if any(r.code == Code.AUDIT_GAP for r in f.reasons)]
    assert len(hits) == 1, found
    return hits[0]


def test_an_unaudited_copy_is_a_critical_gap_laid_at_the_role_that_ran_it() -> None:
    t0 = at(hour=10)
    e = watching(t0)
    e.process([ev(t0 + k * SECOND, rows=1, params=(str(k),)) for k in range(1, 9)])  # lookups
    copy = StatementReads(
        "mallory", "crm", 42, "COPY crm.client_list TO STDOUT", (TABLE,), t0, t0 + 10 * SECOND,
        1, ROWS,
    )  # fmt: skip
    backend = Backend(
        4242, "mallory", "crm", "10.9.9.9", "psql", "active", "copy", (TABLE,),
        "COPY crm.client_list TO STDOUT", t0, t0 + 2 * SECOND, t0 + 2 * SECOND,
    )  # fmt: skip
    e.observe(Observations(backends=(backend,)), t0 + 3 * SECOND, t0)
    e.observe(Observations(backends=()), t0 + 5 * SECOND, t0)
    e.observe(Observations(statements=(copy,)), t0 + 10 * SECOND, t0)
    found = caught_up(e, reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS, idx=8), t0 + 10 * SECOND)
    gap = gap_of(found)
    assert gap.severity is Severity.CRITICAL
    p = gap.principal
    assert (p.user, p.client_addr, p.application_name, p.table) == (
        "mallory",
        "10.9.9.9",
        "psql",
        TABLE,
    )
    detail = gap.reasons[0].detail
    assert "pg_stat_statements counts 50,000 rows for mallory" in detail, detail
    assert "50,000 read unaudited" in detail, detail
    # the table's own counters tell the same read: laid at the same reader, in one reason
    view = next(v for v in e.snapshot(t0 + 11 * SECOND).readers if v.principal.user == "mallory")
    held = view.reasons[0].detail
    assert "(100% of the table); likely mallory: its own rows, unaudited, are 50,000" in held
    assert "; before: pg_stat_statements counts 50,000 rows for mallory" in held
    assert len([f for f in found if f.principal.user == "mallory"]) == 1
    assert e.gap_tuples[TABLE] == ROWS


def test_count_star_and_an_hourly_aggregate_scan_the_table_without_a_gap() -> None:
    t0 = at(hour=3)
    e = watching(t0)
    e.process([
        ev(t0 + SECOND, "SELECT count(*) FROM crm.client_list", rows=1, user="report"),
        ev(t0 + 2 * SECOND, "SELECT region, count(*) FROM crm.client_list GROUP BY region",
           rows=12, user="report"),
    ])  # fmt: skip
    found = caught_up(e, reads(t0, t0 + 10 * SECOND, scans=2, seq=2 * ROWS), t0 + 10 * SECOND)
    assert found == []
    assert e.gap_tuples[TABLE] == 0


def test_one_unaudited_scan_among_audited_scans_is_still_found() -> None:
    # lookups on an unindexed column scan the whole table each: 20 of them are accounted for,
    # the 21st scan is not
    t0 = at(hour=3)
    e = watching(t0)
    e.process([
        ev(t0 + SECOND + k, "SELECT * FROM crm.client_list WHERE email = $1", rows=1,
           params=(f"a{k}@x",))
        for k in range(20)
    ])  # fmt: skip
    found = caught_up(e, reads(t0, t0 + 10 * SECOND, scans=21, seq=21 * ROWS), t0 + 10 * SECOND)
    gap = gap_of(found)
    assert gap.principal.user == UNKNOWN_USER  # nothing in the statistics names it...
    assert gap.severity is Severity.WARNING  # ...so it does not page
    assert "50,000 read unaudited" in gap.reasons[0].detail


def test_index_fetches_of_audited_lookups_are_accounted_for() -> None:
    t0 = at(hour=3)
    e = watching(t0)
    e.process([ev(t0 + SECOND + k, rows=1, params=(str(k),)) for k in range(500)])
    assert caught_up(e, reads(t0, t0 + 10 * SECOND, idx=500), t0 + 10 * SECOND) == []
    # the same index fetches without a single audited statement: a gap (a few percent: warning)
    later = t0 + 3600 * SECOND
    found = caught_up(e, reads(later, later + 10 * SECOND, idx=5_000), later + 10 * SECOND)
    assert gap_of(found).severity is Severity.WARNING


def test_a_window_is_judged_only_once_the_audit_log_has_caught_up_with_it() -> None:
    t0 = at(hour=3)
    e = watching(t0)
    obs = reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS)
    # the tail is behind: its records of the window may still come
    assert e.observe(obs, t0 + 10 * SECOND, t0 + 10 * SECOND) == []
    assert e.gaps_waiting() == 1
    # they come: an audited full read in the window, logged late
    e.process([ev(t0 + 11 * SECOND, "SELECT * FROM crm.client_list", rows=ROWS, user="backup")])
    assert e.judge_gaps(t0 + 20 * SECOND) == []
    assert e.gaps_waiting() == 0


def test_an_audited_statement_accounts_for_reads_only_for_the_gap_window() -> None:
    t0 = at(hour=3)
    e = watching(t0)  # the default window: 10 minutes
    # an index-only count(*) leaves its credit unspent...
    e.process([ev(t0, "SELECT count(*) FROM crm.client_list", rows=1, user="report")])
    assert caught_up(e, reads(t0, t0 + 10 * SECOND), t0 + 10 * SECOND) == []
    # ...which cannot cover a COPY half an hour later (nothing names its reader: a warning)
    later = t0 + 1800 * SECOND
    found = caught_up(e, reads(later, later + 10 * SECOND, scans=1, seq=ROWS), later + 10 * SECOND)
    gap = gap_of(found)
    assert gap.severity is Severity.WARNING
    assert "no statistics name the reader" in gap.reasons[0].detail


def test_a_function_returning_the_table_is_the_likely_reader_when_nothing_names_the_table() -> None:
    t0 = at(hour=3)
    e = watching(t0)
    dump = StatementReads(
        "eve", "crm", 7, "SELECT * FROM public.export_clients()", (), t0, t0 + 10 * SECOND, 1, ROWS
    )
    e.observe(Observations(statements=(dump,)), t0 + 10 * SECOND, t0)
    found = caught_up(e, reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS), t0 + 10 * SECOND)
    gap = gap_of(found)
    assert gap.principal.user == "eve"
    assert "export_clients" in gap.reasons[0].detail


def test_set_up_changes_are_tampering_on_every_watched_table_by_whoever_the_database_names() -> (
    None
):
    t0 = at(hour=3)
    e = watching(t0)
    backend = Backend(
        77, "root_dba", "crm", "10.1.1.1", "psql", "idle", "select", (TABLE,),
        "SELECT 1 FROM crm.client_list", t0, None, t0,
    )  # fmt: skip
    e.observe(Observations(backends=(backend,)), t0, t0)
    set_by_role = Tampered(t0 + SECOND, Severity.CRITICAL, "SET pgaudit.log = 'none'", (),
                           "root_dba")  # fmt: skip
    unknown = Tampered(t0 + 2 * SECOND, Severity.WARNING, "the server restarted at 03:00:02 UTC")
    found = e.observe(Observations(tampered=(set_by_role, unknown)), t0 + 2 * SECOND, t0)
    by_user = {f.principal.user: f for f in found}
    assert by_user["root_dba"].severity is Severity.CRITICAL
    assert by_user["root_dba"].principal.client_addr == "10.1.1.1"  # from its backend
    assert by_user["root_dba"].reasons[0].code == Code.AUDIT_TAMPER
    assert by_user[UNKNOWN_USER].severity is Severity.WARNING


def test_a_backend_reading_the_table_is_a_live_reader_until_it_ends() -> None:
    t0 = at(hour=3)
    e = watching(t0)
    cursor = Backend(
        99, "intern", "crm", "", "psql", "idle in transaction", "cursor", (TABLE,),
        "FETCH 100 FROM c", t0, t0, t0,
    )  # fmt: skip
    e.observe(Observations(backends=(cursor,)), t0, t0)
    view = next(v for v in e.snapshot(t0).readers if v.principal.user == "intern")
    assert view.principal.client_addr == "[local]"
    assert view.backends == (cursor,)
    assert e.backends_of(view.principal) == (cursor,)
    e.observe(Observations(backends=()), t0 + 2 * SECOND, t0)
    assert e.backends_of(view.principal) == ()


def test_a_weaker_change_joins_the_stronger_one_a_reader_holds() -> None:
    t0 = at(hour=3)
    e = watching(t0)
    revoke = Tampered(t0, Severity.CRITICAL, "auditor lost SELECT on crm.client_list")
    restart = Tampered(t0 + SECOND, Severity.WARNING, "the server restarted at 03:00:01 UTC")
    e.observe(Observations(tampered=(revoke,)), t0, t0)
    assert e.observe(Observations(tampered=(restart,)), t0 + SECOND, t0) == []  # no rise
    view = next(v for v in e.snapshot(t0 + SECOND).readers if v.principal.user == UNKNOWN_USER)
    assert view.severity is Severity.CRITICAL
    assert view.reasons[0].detail == (
        "the server restarted at 03:00:01 UTC; before: auditor lost SELECT on crm.client_list"
    )


def test_reads_from_before_the_database_was_watched_are_not_judged() -> None:
    # the audit log was read from long before; the credits count only from the first poll on
    t0 = at(hour=3)
    e = watching(t0)
    before = reads(t0 - 10 * SECOND, t0, scans=1, seq=ROWS)
    assert caught_up(e, before, t0) == []
    assert e.gaps_waiting() == 0


@pytest.mark.parametrize(
    ("case", "records", "scans", "highest"),
    [
        # one audited statement, the table scanned once per group (a correlated subquery):
        # unexplained scans, but no statistics lay them at a role: a warning, never a page
        ("correlated subquery, 12 scans", 1, 12, Severity.WARNING),
        # a self-join: pgaudit writes two OBJECT records for the two scans
        ("self-join, two records", 2, 2, Severity.NONE),
        ("an aggregate", 1, 1, Severity.NONE),
    ],
)
def test_one_statement_scanning_the_table_several_times_never_pages(
    case: str, records: int, scans: int, highest: Severity
) -> None:
    t0 = at(hour=3)
    e = watching(t0)
    statement = "SELECT r.name, (SELECT count(*) FROM crm.client_list) FROM regions r"
    e.process([
        ev(t0 + SECOND, statement, rows=12, user="report", session="r", statement_id=1)
        for _ in range(records)
    ])  # fmt: skip
    found = caught_up(e, reads(t0, t0 + 10 * SECOND, scans=scans, seq=scans * ROWS),
                      t0 + 10 * SECOND)  # fmt: skip
    assert max((f.severity for f in found), default=Severity.NONE) == highest, case


def test_other_statements_credits_cannot_hide_a_roles_copy() -> None:
    # an audited statement that read nothing (LIMIT 0) leaves a whole-table credit that covers
    # the table's scan; the COPY's role is still caught by its own pg_stat_statements rows
    t0 = at(hour=3)
    e = watching(t0)
    e.process([ev(t0 + SECOND, "SELECT * FROM crm.client_list LIMIT 0", rows=0, user="mallory")])
    copy = StatementReads("mallory", "crm", 9, "COPY crm.client_list TO STDOUT", (TABLE,),
                          t0, t0 + 10 * SECOND, 1, ROWS)  # fmt: skip
    e.observe(Observations(statements=(copy,)), t0 + 10 * SECOND, t0)
    found = caught_up(e, reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS), t0 + 10 * SECOND)
    gap = gap_of(found)
    assert (gap.principal.user, gap.severity) == ("mallory", Severity.CRITICAL)
    assert "its audit records 0: 50,000 read unaudited" in gap.reasons[0].detail
    assert e.gap_tuples[TABLE] == 0  # the table's own count was covered


def test_a_roles_estimated_rows_are_not_held_against_its_exact_counts() -> None:
    # log_rows off: the audit records' rows are guesses; only the table's scans are judged
    t0 = at(hour=3)
    e = watching(t0)
    e.process([ev(t0 + SECOND, "SELECT * FROM crm.client_list WHERE city = $1", rows=None,
                  params=("Oslo",), user="analyst")])  # fmt: skip
    read = StatementReads("analyst", "crm", 3, "SELECT * FROM crm.client_list WHERE city = $1",
                          (TABLE,), t0, t0 + 10 * SECOND, 1, 20_000)  # fmt: skip
    e.observe(Observations(statements=(read,)), t0 + 10 * SECOND, t0)
    assert caught_up(e, reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS), t0 + 10 * SECOND) == []


def test_a_gap_laid_at_an_expected_principal_is_noted_not_raised() -> None:
    t0 = at(hour=3)
    e = engine(
        learning_hours=0,
        expected=(
            ExpectedPrincipal(user="backup", application_name="pg_dump", note="nightly backup"),
        ),  # fmt: skip
    )
    e.observe(Observations(), t0 - SECOND, 0)
    dump = Backend(
        5, "backup", "crm", "10.0.0.9", "pg_dump", "active", "copy", (TABLE,),
        "COPY crm.client_list TO stdout;", t0, t0, t0,
    )  # fmt: skip
    e.observe(Observations(backends=(dump,)), t0 + SECOND, t0)
    copy = StatementReads("backup", "crm", 4, "COPY crm.client_list TO stdout", (TABLE,),
                          t0, t0 + 10 * SECOND, 1, ROWS)  # fmt: skip
    e.observe(Observations(backends=(), statements=(copy,)), t0 + 10 * SECOND, t0)
    found = caught_up(e, reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS), t0 + 10 * SECOND)
    assert [f for f in found if f.severity > Severity.INFO] == []
    view = next(v for v in e.snapshot(t0 + 10 * SECOND).readers if v.principal.user == "backup")
    assert view.reasons[0].code == Code.AUDIT_GAP
    assert view.reasons[0].detail.endswith("(expected: nightly backup)")


class _Tail:
    """An audit source as the live engine sees it: its health only."""

    name = "audit_log"

    def __init__(self, behind: int) -> None:
        self.behind = behind

    def batches(self):  # type: ignore[no-untyped-def]  # never run here
        raise NotImplementedError

    def health(self) -> SourceHealth:
        return SourceHealth(self.name, "ok", bytes_behind=self.behind)


def test_a_tail_behind_makes_no_gap_until_it_has_read_past_the_window() -> None:
    t0 = at(hour=3)
    tail = _Tail(behind=50_000_000)
    live = LiveEngine(engine(learning_hours=0), None, clock=lambda: t0 + 60 * SECOND)
    live.attach(tail)
    live.engine.process([ev(t0 - 30 * SECOND, rows=1)])  # read up to half a minute ago
    live.observe(Observations(taken_us=t0 - 20 * SECOND))
    # the app's audited full read at t0+1 s is still in the unread part of the log
    window = reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS).table_reads
    found = live.observe(Observations(table_reads=window, taken_us=t0 + 40 * SECOND))
    assert found == [] and live.engine.gaps_waiting() == 1
    live.feed([ev(t0 + SECOND, "SELECT * FROM crm.client_list", rows=ROWS, user="app")])
    tail.behind = 0
    assert live.observe(Observations(taken_us=t0 + 45 * SECOND)) == []
    assert live.engine.gaps_waiting() == 0


def test_a_change_seen_late_is_held_from_when_it_is_seen() -> None:
    # the server restarted two hours ago; its set-up is read again only now
    t0 = at(hour=3)
    e = watching(t0)
    restart = Tampered(t0, Severity.WARNING, "the server restarted at 03:00:00 UTC")
    later = t0 + 7200 * SECOND
    found = e.observe(Observations(tampered=(restart,)), later, later)
    assert [(f.time_us, f.severity) for f in found] == [(t0, Severity.WARNING)]
    view = next(v for v in e.snapshot(later + SECOND).readers if v.principal.user == UNKNOWN_USER)
    assert view.severity is Severity.WARNING  # still held: the quiet period runs from now


def test_the_apps_lookups_standing_for_a_scan_cannot_hide_a_copy_from_its_roles_rows() -> None:
    # the app's lookups' index fetches are flushed a window late: in this window they may stand
    # for the COPY's scan (they could be lookups on an unindexed column); the COPY's role is
    # still caught by its own rows
    t0 = at(hour=3)
    e = watching(t0)
    e.process([ev(t0 + SECOND + k, rows=1, params=(str(k),)) for k in range(20)])
    copy = StatementReads("copier", "crm", 9, "COPY crm.client_list TO STDOUT", (TABLE,),
                          t0, t0 + 10 * SECOND, 1, ROWS)  # fmt: skip
    e.observe(Observations(statements=(copy,)), t0 + 10 * SECOND, t0)
    found = caught_up(e, reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS), t0 + 10 * SECOND)
    assert e.gap_tuples[TABLE] == 0  # the table's check was fooled...
    assert (gap_of(found).principal.user, gap_of(found).severity) == ("copier", Severity.CRITICAL)


def test_a_roles_unaudited_rows_count_in_its_rows() -> None:
    t0 = at(hour=3)
    e = watching(t0)
    copy = StatementReads("mallory", "crm", 9, "COPY crm.client_list TO STDOUT", (TABLE,),
                          t0, t0 + 10 * SECOND, 1, ROWS)  # fmt: skip
    e.observe(Observations(statements=(copy,)), t0 + 10 * SECOND, t0)
    caught_up(e, reads(t0, t0 + 10 * SECOND, scans=1, seq=ROWS), t0 + 10 * SECOND)
    view = next(v for v in e.snapshot(t0 + 11 * SECOND).readers if v.principal.user == "mallory")
    assert (view.rows_hour, view.fraction_hour) == (ROWS, 1.0)


def test_a_table_gap_counted_late_is_the_copy_not_the_apps_last_lookups() -> None:
    # the COPY's scan reaches the table's counters 15 s after pg_stat_statements counted it
    # (its transaction ended later); meanwhile the app's last lookups are logged a second late
    t0 = at(hour=3)
    e = watching(t0)
    copy = StatementReads("copier", "crm", 9, "COPY crm.client_list TO STDOUT", (TABLE,),
                          t0, t0 + 2 * SECOND, 1, ROWS)  # fmt: skip
    e.observe(Observations(statements=(copy,)), t0 + 2 * SECOND, t0 + 4 * SECOND)
    late = t0 + 15 * SECOND
    e.process([ev(late + k * 100_000, rows=1, params=(str(k),), user="app") for k in range(15)])
    lookups = StatementReads("app", "crm", 1, "SELECT * FROM crm.client_list WHERE id = $1",
                             (TABLE,), late, late + 2 * SECOND, 19, 19)  # fmt: skip
    e.observe(Observations(statements=(lookups,)), late + 2 * SECOND, late)
    found = caught_up(e, reads(late, late + 2 * SECOND, scans=1, seq=ROWS, idx=19),
                      late + 2 * SECOND)  # fmt: skip
    assert not [f for f in found if f.principal.user == "app"], found
    view = next(v for v in e.snapshot(late + 3 * SECOND).readers if v.principal.user == "copier")
    assert "likely copier: its own rows, unaudited, are 50,000" in view.reasons[0].detail
