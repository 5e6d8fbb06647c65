"""The engine as a story: event sequences in, findings out (DESIGN.md, Detection)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.baselines import Baselines, StateError
from core.engine import Engine
from core.events import AccessEvent, EventKind
from core.findings import Severity
from core.settings import ExpectedPrincipal
from tests.unit.enginekit import ROWS, TABLE, app_day, at, codes, engine, ev, run

WHOLE = "SELECT * FROM crm.client_list"


def test_a_whole_table_select_is_critical_from_the_first_record_even_while_learning() -> None:
    e = engine()
    [finding] = run(e, [ev(at(0, 10), WHOLE, user="alice", app="psql", rows=ROWS)])
    assert e.learning()
    assert finding.severity is Severity.CRITICAL
    assert finding.time_us == at(0, 10)
    assert codes(finding)[0] == "bulk_read"
    detail = finding.reasons[0].detail
    assert "50,000 rows (100% of the table)" in detail and "logged by pgaudit" in detail


def test_without_logged_rows_the_shape_gives_the_estimate_and_says_so() -> None:
    e = engine()
    [finding] = run(e, [ev(at(0, 10), WHOLE, user="alice", app="psql")])
    assert finding.severity is Severity.CRITICAL
    assert "estimated from its shape" in finding.reasons[0].detail


def test_table_size_unknown_a_bulk_shape_still_means_the_whole_table() -> None:
    e = engine(rows=None)
    [finding] = run(e, [ev(at(0, 10), "COPY crm.client_list TO STDOUT", command="COPY")])
    assert finding.severity is Severity.CRITICAL
    assert "table size unknown" in finding.reasons[0].detail


def test_key_lookups_of_the_app_raise_nothing() -> None:
    e = engine()
    assert run(e, app_day(0) + app_day(1) + app_day(2)) == []
    view = e.snapshot().readers[0]
    assert view.severity is Severity.NONE and view.statements == len(app_day(0)) * 3


def test_the_session_and_object_records_of_one_statement_count_once() -> None:
    e = engine()
    first = ev(
        at(0, 9),
        "SELECT name FROM crm.client_list WHERE id = 1",
        session="a",
        statement_id=5,
        audit_type="SESSION",
        rows=1,
    )
    second = ev(
        at(0, 9),
        "SELECT name FROM crm.client_list WHERE id = 1",
        session="a",
        statement_id=5,
        audit_type="OBJECT",
        rows=1,
    )
    run(e, [first, second])
    assert e.duplicates == 1
    assert e.snapshot().readers[0].statements == 1


def test_previously_logged_takes_the_text_of_the_statement_it_belongs_to() -> None:
    e = engine()
    found = run(
        e,
        [
            ev(at(0, 9), WHOLE, session="b", statement_id=3, substatement_id=1),
            ev(at(0, 9), None, session="b", statement_id=3, substatement_id=2),
        ],
    )
    assert found and found[0].severity is Severity.CRITICAL
    assert e.snapshot().readers[0].statements == 2


def test_sequential_keys_raise_a_warning_after_thirty_in_a_row() -> None:
    e = engine()
    events = app_day(0) + app_day(1)
    walk = [
        ev(at(1, 14, second=i), params=(str(1000 + i),), addr="10.0.0.9", app="", session="z")
        for i in range(40)
    ]
    noted, finding = run(e, events + walk)
    assert codes(noted) == ["new_address"] and noted.severity is Severity.INFO
    assert finding.severity is Severity.WARNING
    assert finding.time_us == at(1, 14, second=29)
    assert codes(finding)[0] == "sequential_keys"
    assert "30 key lookups on consecutive keys 1000..1029" in finding.reasons[0].detail


def test_interleaved_random_lookups_do_not_break_an_enumeration() -> None:
    e = engine()
    events = []
    for i in range(60):
        events.append(ev(at(0, 14, second=2 * i), params=(str(20_000 + i),), session="x"))
        events.append(ev(at(0, 14, second=2 * i + 1), params=(str((i * 7919) % ROWS),)))
    [finding] = run(e, events)
    assert codes(finding) == ["sequential_keys"]


def test_permission_denied_probing_is_info_then_a_warning_at_three() -> None:
    e = engine()
    probe = [
        ev(at(0, 3, minute=i), WHOLE, user="jdoe", kind=EventKind.DENIED, rows=None)
        for i in range(3)
    ]
    found = run(e, probe)
    assert [f.severity for f in found] == [Severity.INFO, Severity.WARNING]
    assert "3 statement(s) refused with permission denied" in found[1].reasons[0].detail


def _dba(class_: str, command: str, statement: str) -> AccessEvent:
    """A session-audit record by the superuser that names no table (as GRANT, SET... do)."""
    return ev(
        at(0, 1),
        statement,
        user="postgres",
        app="psql",
        class_=class_,
        command=command,
        kind=EventKind.CONTROL,
        object_name="",
        audit_type="SESSION",
    )


@pytest.mark.parametrize(
    ("class_", "command", "statement"),
    [
        ("ROLE", "REVOKE", "REVOKE SELECT ON crm.client_list FROM auditor"),
        ("ROLE", "REVOKE", "REVOKE ALL ON ALL TABLES IN SCHEMA crm FROM auditor"),
        ("MISC", "ALTER SYSTEM", "ALTER SYSTEM SET pgaudit.log = 'none'"),
        ("MISC", "SET", "SET pgaudit.log = 'none'"),
        ("ROLE", "ALTER ROLE", "ALTER ROLE alice SET pgaudit.log = 'none'"),
        ("DDL", "DROP EXTENSION", "DROP EXTENSION pgaudit"),
        ("ROLE", "DROP ROLE", "DROP ROLE auditor"),
    ],
)
def test_audit_tampering_is_critical_at_its_record(
    class_: str, command: str, statement: str
) -> None:
    e = engine()
    record = _dba(class_, command, statement)
    [finding] = run(e, [record])
    assert finding.severity is Severity.CRITICAL and finding.time_us == at(0, 1)
    assert codes(finding) == ["audit_tamper"]
    assert finding.principal.user == "postgres" and finding.principal.table == TABLE


@pytest.mark.parametrize(
    ("class_", "command", "statement"),
    [
        ("ROLE", "REVOKE", "REVOKE SELECT ON crm.client_list FROM bob"),
        ("ROLE", "REVOKE", "REVOKE SELECT ON crm.orders FROM auditor"),
        ("ROLE", "GRANT", "GRANT SELECT ON crm.client_list TO auditor"),
        ("ROLE", "ALTER ROLE", "ALTER ROLE alice PASSWORD <REDACTED>"),
        ("DDL", "CREATE TABLE", "CREATE TABLE t (a int)"),
    ],
)
def test_harmless_changes_are_not_tampering(class_: str, command: str, statement: str) -> None:
    e = engine()
    record = _dba(class_, command, statement)
    assert run(e, [record]) == []


def test_a_new_principal_is_learned_not_raised_while_learning_then_noted_after() -> None:
    e = engine()
    run(e, app_day(0))
    assert run(e, [ev(at(0, 12), params=("5",), addr="10.0.0.2")]) == []
    [finding] = run(e, [ev(at(1, 12), params=("5",), addr="10.0.0.3")])
    assert finding.severity is Severity.INFO
    assert codes(finding) == ["new_address"]
    assert "new client address 10.0.0.3 (known from 2 other addresses)" in (
        finding.reasons[0].detail
    )
    [unknown] = run(e, [ev(at(1, 13), params=("5",), user="mallory", addr="10.0.0.3")])
    assert codes(unknown) == ["first_seen"]


def test_an_expected_backup_is_noted_not_paged_but_watched_for_volume() -> None:
    backup = ExpectedPrincipal(user="backup", application_name="pg_dump", note="nightly backup")
    e = engine(expected=(backup,))
    copy = "COPY crm.client_list TO STDOUT"
    [first] = run(e, [ev(at(0, 2), copy, user="backup", app="pg_dump", command="COPY")])
    assert first.severity is Severity.INFO and codes(first) == ["expected"]
    again = [
        ev(at(1, 2, minute=10 * i), copy, user="backup", app="pg_dump", command="COPY")
        for i in range(3)
    ]
    found = run(e, again)
    assert [f.severity for f in found] == [Severity.INFO, Severity.WARNING]
    assert "expected principal (nightly backup) read 150,000 rows in 24 h" in (
        found[1].reasons[0].detail
    )


def test_a_habitual_bulk_reader_is_only_noted_after_learning() -> None:
    e = engine()
    days = [ev(at(d, 2), WHOLE, user="etl", app="loader", rows=ROWS) for d in range(3)]
    found = run(e, days)
    assert found[0].severity is Severity.CRITICAL
    # the same read a day later: habitual
    assert all("habitual" in f.reasons[0].detail for f in found[1:])
    assert all(f.severity is Severity.INFO for f in found[1:])


def test_severity_falls_back_after_the_quiet_period_and_a_later_rise_is_a_new_finding() -> None:
    e = engine()
    whole = dict(user="alice", app="psql", rows=ROWS)
    found = run(e, [ev(at(0, 10), WHOLE, **whole), ev(at(0, 10, 20), WHOLE, **whole)])  # type: ignore[arg-type]
    assert len(found) == 1  # one finding per rise, not per event
    later = run(e, [ev(at(0, 12), WHOLE, **whole)])  # type: ignore[arg-type]
    assert len(later) == 1 and later[0].severity is Severity.CRITICAL


def test_paging_through_the_table_from_a_new_address_is_critical_before_half() -> None:
    e = engine()
    run(e, app_day(0) + app_day(1))
    pages = [
        ev(
            at(2, 15, second=5 * i),
            "SELECT * FROM crm.client_list ORDER BY id LIMIT $1 OFFSET $2",
            params=("1000", str(1000 * i)),
            addr="203.0.113.7",
            session="evil",
            command="BIND",
        )
        for i in range(50)
    ]
    found = run(e, pages)
    critical = [f for f in found if f.severity is Severity.CRITICAL]
    assert critical, found
    read_before = pages.index(next(p for p in pages if p.time_us == critical[0].time_us)) + 1
    assert read_before * 1000 < ROWS / 2
    assert {"offset_walk", "table_fraction"} & set(codes(critical[0]))


def test_a_never_seen_principal_pulling_batches_is_a_warning() -> None:
    e = engine()
    run(e, app_day(0) + app_day(1))
    batches = [
        ev(
            at(1, 16, minute=i),
            "SELECT * FROM crm.client_list WHERE id > $1 ORDER BY id LIMIT 1000",
            params=(str(1000 * i),),
            user="svc_export",
            addr="10.9.9.9",
            app="",
            session="x",
            rows=1000,
        )
        for i in range(3)
    ]
    found = run(e, batches)
    assert max(f.severity for f in found) >= Severity.WARNING
    assert "new_principal_volume" in codes(found[-1])


def test_reading_a_slice_at_an_hour_never_worked_is_a_warning() -> None:
    e = engine()
    days = []
    for d in range(3):
        for i in range(30):
            days.append(
                ev(
                    at(d, 9, minute=2 * i),
                    "SELECT * FROM crm.client_list WHERE region = 'EU' ORDER BY id LIMIT 50",
                    user="zoe",
                    addr="10.1.1.1",
                    app="psql",
                    rows=50,
                    session=f"z{d}",
                )
            )
    assert max((f.severity for f in run(e, days)), default=Severity.NONE) < Severity.WARNING
    night = [
        ev(
            at(3, 3, minute=i),
            "SELECT * FROM crm.client_list WHERE region = 'NA'",
            user="zoe",
            addr="10.1.1.1",
            app="psql",
            rows=1500,
            session="zn",
        )
        for i in range(3)
    ]
    found = run(e, night)
    assert found and found[0].reasons[0].code == "unusual_hour"
    worst = max(found, key=lambda f: f.severity)
    assert worst.severity is Severity.WARNING
    assert "at 03:00 UTC, an hour it never works (usually 09:00-10:00 UTC)" in " ".join(
        r.detail for r in worst.reasons
    )


def test_baselines_survive_a_restart(tmp_path: Path) -> None:
    first = engine()
    run(first, app_day(0) + app_day(1))
    first.save(tmp_path)
    second = Engine(first.config, Baselines.load(tmp_path))
    assert not second.learning(at(2))
    # a known principal is not new; a new address for the known user is
    assert run(second, [ev(at(2, 10), params=("1",))]) == []
    [finding] = run(second, [ev(at(2, 10, 1), params=("1",), addr="10.0.0.77")])
    assert codes(finding) == ["new_address"]


def test_corrupt_baselines_are_refused_not_silently_relearned(tmp_path: Path) -> None:
    (tmp_path / "baselines.json").write_text("{not json")
    with pytest.raises(StateError, match="corrupt baselines"):
        Baselines.load(tmp_path)
    (tmp_path / "baselines.json").write_bytes(b'{"version": 1, "x": "\xff"}')
    with pytest.raises(StateError, match="corrupt baselines"):
        Baselines.load(tmp_path)


def test_baselines_with_a_day_that_is_not_a_number_are_refused(tmp_path: Path) -> None:
    e = engine()
    run(e, app_day(0)[:5])
    e.save(tmp_path)
    path = tmp_path / "baselines.json"
    text = path.read_text()  # a habit is an array; its days, the one object in it: {"20759": [..]}
    assert text.count('{"2') == 1
    path.write_text(text.replace('{"2', '{"x2'))
    with pytest.raises(StateError, match="corrupt baselines"):
        Baselines.load(tmp_path)


def test_the_snapshot_ranks_the_most_anomalous_first() -> None:
    e = engine()
    run(e, app_day(0)[:50] + [ev(at(0, 10), WHOLE, user="alice", app="psql", rows=ROWS)])
    snap = e.snapshot()
    assert [v.principal.user for v in snap.readers] == ["alice", "app"]
    top = snap.readers[0]
    assert top.severity is Severity.CRITICAL and top.score >= 80
    assert top.fraction_hour == 1.0 and not top.rows_estimated
    assert snap.findings[-1].principal.user == "alice"
    with pytest.raises(AttributeError):
        top.score = 0  # type: ignore[misc]


def test_after_a_finding_lapses_the_rows_that_raised_it_do_not_raise_it_again() -> None:
    e = engine()
    run(e, app_day(0))
    page = "SELECT * FROM crm.client_list WHERE region = 'EU' ORDER BY id LIMIT 50"
    found = run(
        e,
        [ev(at(1, 10), WHOLE, user="alice", app="psql", rows=ROWS, session="a")]
        + [
            ev(at(1, 12 + i / 4), page, user="alice", app="psql", rows=50, session="a")
            for i in range(16)
        ],
    )
    assert [f.severity for f in found] == [Severity.CRITICAL]


def _lookups(day: int, hour: int, count: int, addr: str) -> list[AccessEvent]:
    return [
        ev(at(day, hour, second=i * 3600 / count), params=(str((i * 7919) % ROWS),), addr=addr)
        for i in range(count)
    ]


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
def test_a_host_far_busier_than_its_peers_is_a_warning_peers_known_after_restart(
    tmp_path: Path, restarted: bool
) -> None:
    e = engine()
    run(e, app_day(0) + app_day(1) + app_day(0, addr="10.0.0.2") + app_day(1, addr="10.0.0.2"))
    if restarted:
        e.save(tmp_path)
        e = Engine(e.config, Baselines.load(tmp_path))
    # a new host like its peers: only noted
    like_peers = run(e, _lookups(2, 10, 60, "10.0.0.3"))
    assert [codes(f) for f in like_peers] == [["new_address"]]
    # a new host with ten times their busiest hour
    busy = run(e, _lookups(2, 11, 1000, "10.0.0.4"))
    assert [f.severity for f in busy] == [Severity.INFO, Severity.WARNING]
    assert codes(busy[1])[0] == "volume"
    assert "500 key lookups in the last hour (its peers' busiest: 60)" in busy[1].reasons[0].detail


def test_a_long_run_forgets_idle_readers_and_month_old_principals() -> None:
    e = engine()
    run(e, app_day(0) + _lookups(0, 12, 5, "10.0.0.8"))
    run(e, app_day(3))  # 10.0.0.8 idle for three days: out of the live set, still known
    assert [v.principal.client_addr for v in e.snapshot().readers] == ["10.0.0.1"]
    assert run(e, _lookups(3, 14, 2, "10.0.0.8")) == []  # known: not new
    run(e, app_day(40))  # a month later
    again = run(e, _lookups(40, 15, 1, "10.0.0.8"))
    assert [codes(f) for f in again] == [["new_address"]]  # forgotten: new again
    assert len(e.baselines.habits) == 2


def test_an_enumeration_walking_down_is_caught_too() -> None:
    e = engine()
    walk = [
        ev(at(0, 14, second=i), params=(str(9000 - i),), addr="10.0.0.9", session="z")
        for i in range(35)
    ]
    [finding] = run(e, app_day(0)[:200] + walk)
    assert codes(finding) == ["sequential_keys"]
    assert "30 key lookups on consecutive keys 9000..8971 in 28s" in finding.reasons[0].detail


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("10.20.0.7", True), ("10.21.0.7", False), ("[local]", False), ("", False)],
)
def test_expected_principals_match_a_client_network(addr: str, expected: bool) -> None:
    etl = ExpectedPrincipal(client_addr="10.20.0.0/16", note="ETL subnet")
    e = engine(expected=(etl,))
    [finding] = run(e, [ev(at(0, 3), WHOLE, user="etl", app="loader", addr=addr, rows=ROWS)])
    if expected:
        assert finding.severity is Severity.INFO and "ETL subnet" in finding.reasons[0].detail
    else:
        assert finding.severity is Severity.CRITICAL


@pytest.mark.parametrize("value", ["²", "1²", "٣", "-5", "9" * 40, ""])
def test_parameters_that_only_look_numeric_never_crash_the_engine(value: str) -> None:
    e = engine()
    run(
        e,
        [
            ev(at(0, 9), params=(value,)),
            ev(
                at(0, 9, 1),
                "SELECT * FROM crm.client_list ORDER BY id LIMIT $1 OFFSET $2",
                params=(value, value),
            ),
            ev(at(0, 9, 2), "SELECT * FROM crm.client_list WHERE id = ANY($1)", params=(value,)),
        ],
    )
    assert e.snapshot().readers[0].statements == 3


@pytest.mark.parametrize("step", [2, -7, 100])
def test_an_enumeration_with_a_fixed_step_is_caught(step: int) -> None:
    e = engine()
    walk = [
        ev(at(0, 14, second=i), params=(str(20_000 + step * i),), addr="10.0.0.9", session="z")
        for i in range(35)
    ]
    [finding] = run(e, app_day(0)[:300] + walk)
    assert codes(finding) == ["sequential_keys"]
    last = 20_000 + step * 29
    assert f"30 key lookups on keys {abs(step)} apart 20000..{last}" in finding.reasons[0].detail


def test_guesses_at_filtered_reads_never_page() -> None:
    e = engine()
    searches = [
        ev(
            at(0, 9, minute=i),
            f"SELECT * FROM crm.client_list WHERE name LIKE 'S{i}%' LIMIT 500",
            user="alice",
            app="psql",
            session="a",
        )
        for i in range(60)
    ] + [
        ev(
            at(0, 10, minute=i),
            "SELECT * FROM crm.client_list WHERE region = 'EU'",
            user="alice",
            app="psql",
            session="a",
        )
        for i in range(30)
    ]
    found = run(e, searches)
    assert max((f.severity for f in found), default=Severity.NONE) <= Severity.INFO
    big = run(
        e,
        [
            ev(
                at(0, 11),
                "SELECT * FROM crm.client_list WHERE region = 'EU' LIMIT 40000",
                user="bob",
                app="psql",
                session="b",
            )
        ],
    )
    assert [f.severity for f in big] == [Severity.WARNING]
    assert "may have read up to 40,000 rows (80% of the table), a guess" in (
        big[0].reasons[0].detail
    )


def test_a_keyset_walk_counts_its_pages_in_full_without_logged_rows() -> None:
    e = engine()
    run(e, app_day(0) + app_day(1))
    pages = [
        ev(
            at(2, 15, second=5 * i),
            "SELECT * FROM crm.client_list WHERE id > $1 ORDER BY id LIMIT 1000",
            params=(str(1000 * i),),
            addr="203.0.113.7",
            session="evil",
        )
        for i in range(40)
    ]
    found = run(e, pages)
    critical = [f for f in found if f.severity is Severity.CRITICAL]
    assert critical and "table_fraction" in codes(critical[0])
    assert critical[0].time_us < pages[25].time_us  # before half of the 50,000 rows


def test_a_huge_statement_is_not_kept_whole_yet_previously_logged_still_resolves() -> None:
    """50,000 plans keyed by 1 MB texts, 200,000 sessions holding one each: memory without end.
    A long text is planned and dropped; the session keeps its plan for `<previously logged>`:
    the statement's next part is estimated as the same whole-table read, as with a short text."""

    def rows_read(statement: str) -> tuple[int, Engine]:
        e = engine(learning_hours=0)
        one = ev(at(1), statement, user="mallory", session="m1", statement_id=1)
        two = ev(at(1, 0, 1), None, user="mallory", session="m1", statement_id=1, substatement_id=2)
        run(e, [one, two])
        return e.snapshot().readers[0].rows_hour, e

    padded = WHOLE + " /* " + "pad " * 250_000 + "*/"
    rows, e = rows_read(padded)
    assert rows == rows_read(WHOLE)[0] == 2 * ROWS
    assert all(len(text) <= 4096 for text in e._plans.by_text)
    assert not any(isinstance(s[3], str) and len(s[3]) > 4096 for s in e._sessions.values())
