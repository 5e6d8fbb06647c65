"""The scenario generator: its csvlog parses cleanly with our own reader, it is deterministic, and
its manifest tells the truth about the file (attack times, rows, who is benign)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from collectors.events import EventBuilder, ParseStats
from collectors.logfile import read_events
from core.events import AccessEvent
from core.tables import TableName, WatchedTables
from tests.scenario import ATTACKS, DAY, HOUR, Manifest, Principal, World, generate, main

WATCHED = WatchedTables([TableName.parse("crm.client_list")])


@dataclass(frozen=True)
class Parsed:
    manifest: Manifest
    watched: list[AccessEvent]
    """Events about crm.client_list (what detection sees)."""
    audits: list[AccessEvent]
    """Every audit record, any relation or none (the tamper record names no table)."""
    stats: ParseStats


def _parse(path: Path, manifest: Manifest) -> Parsed:
    stats = ParseStats()
    builder = EventBuilder(WATCHED, stats)
    watched = [e for batch in read_events(path, "csvlog", builder) for e in batch]
    every = EventBuilder(None)
    audits = [e for batch in read_events(path, "csvlog", every) for e in batch]
    return Parsed(manifest, watched, audits, stats)


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _principal(e: AccessEvent) -> Principal:
    return Principal(e.user, e.client_addr, e.application_name)


@pytest.fixture(scope="module", params=[False, True], ids=["log_rows_off", "log_rows_on"])
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Parsed:
    log_rows: bool = request.param
    path = tmp_path_factory.mktemp("scenario") / "postgresql.csv"
    manifest = generate(path, seed=11 + log_rows, log_rows=log_rows, days=3, scale=0.15)
    return _parse(path, manifest)


def test_the_file_parses_without_a_malformed_record(scenario: Parsed) -> None:
    m, stats = scenario.manifest, scenario.stats
    assert stats.malformed == 0, stats.samples
    assert stats.forged == 0
    assert stats.records == m.records
    assert len(scenario.audits) == m.audit_records
    assert m.records > m.audit_records > len(scenario.watched) > 10_000
    times = [e.time_us for e in scenario.audits]
    assert times == sorted(times)
    assert m.start_us <= times[0] and times[-1] < m.end_us
    assert m.end_us - m.start_us == 3 * DAY * 1000


def test_the_manifest_round_trips_through_json(scenario: Parsed) -> None:
    m = scenario.manifest
    assert Manifest.from_json(m.to_json()) == m
    assert Manifest.from_json(Path(m.path).with_suffix(".json").read_text("utf-8")) == m
    assert json.loads(m.to_json())["attacks"][0]["principal"].keys() == {
        "user",
        "client_addr",
        "application_name",
    }


def test_every_attack_starts_and_ends_on_a_record_of_its_principal(scenario: Parsed) -> None:
    m = scenario.manifest
    assert [a.name for a in m.attacks] != []
    assert sorted(a.name for a in m.attacks) == sorted(ATTACKS)
    by_time: dict[int, set[Principal]] = {}
    for e in scenario.audits:
        by_time.setdefault(e.time_us, set()).add(_principal(e))
    for a in m.attacks:
        assert a.principal in by_time.get(a.start_us, set()), a
        assert a.principal in by_time.get(a.end_us, set()), a
        assert a.start_us <= a.end_us


def test_attacks_come_after_learning_in_time_order_and_the_tamper_is_last(
    scenario: Parsed,
) -> None:
    m = scenario.manifest
    assert all(a.start_us >= m.start_us + 30 * HOUR * 1000 for a in m.attacks)
    for before, after in zip(m.attacks, m.attacks[1:], strict=False):
        assert before.end_us < after.start_us, (before.name, after.name)
    assert m.attacks[-1].name == "audit_tamper"
    night = next(a for a in m.attacks if a.name == "unusual_hour_slice")
    hour = (night.start_us - m.start_us) // (HOUR * 1000) % 24
    assert 2 <= hour < 4
    assert (night.start_us - m.start_us) // (DAY * 1000) % 7 < 5  # a weekday


def test_the_new_principals_are_new_and_the_insiders_are_known(scenario: Parsed) -> None:
    m = scenario.manifest
    attack = {a.name: a for a in m.attacks}
    paging = attack["stolen_credentials_paging"].principal
    batches = attack["new_principal_batches"].principal
    seen_before = {
        (e.user, e.client_addr)
        for e in scenario.audits
        if e.time_us < attack["stolen_credentials_paging"].start_us
    }
    assert not any(addr == paging.client_addr for _, addr in seen_before)
    assert paging.user in {user for user, _ in seen_before}  # the app's own credentials
    assert all(
        e.user != batches.user
        for e in scenario.audits
        if e.time_us < attack["new_principal_batches"].start_us
    )
    for name in ("whole_table_select", "unusual_hour_slice"):
        assert attack[name].principal in m.benign
    assert attack["whole_table_select"].principal != attack["unusual_hour_slice"].principal


def test_benign_principals_all_wrote_records(scenario: Parsed) -> None:
    m = scenario.manifest
    seen = {_principal(e) for e in scenario.audits}
    assert set(m.benign) <= seen
    users = {p.user for p in m.benign}
    assert "reporting" in users
    assert ("backup" in users) is not m.log_rows  # pg_dump's COPY is not audited with log_rows
    assert m.expected == [
        {"user": "backup", "application_name": "pg_dump", "note": "nightly backup"}
    ]


def _benign_events(parsed: Parsed) -> list[AccessEvent]:
    """Watched-table events of benign principals outside every attack's time span."""
    m = parsed.manifest
    benign = set(m.benign)
    spans = [(a.start_us, a.end_us) for a in m.attacks]
    return [
        e
        for e in parsed.watched
        if _principal(e) in benign and not any(lo <= e.time_us <= hi for lo, hi in spans)
    ]


def test_the_app_has_a_daily_rhythm_a_surge_day_and_a_new_host(scenario: Parsed) -> None:
    m = scenario.manifest
    app_user = next(a for a in m.attacks if a.name == "stolen_credentials_paging").principal.user
    app = [e for e in _benign_events(scenario) if e.user == app_user]
    day_us, hour_us = DAY * 1000, HOUR * 1000
    per_day = [sum(1 for e in app if (e.time_us - m.start_us) // day_us == d) for d in range(3)]
    assert per_day[1] > 2.3 * per_day[0]  # the surge: 3x all day (day 1 of 3)
    first_day = [
        (e.time_us - m.start_us) // hour_us for e in app if e.time_us < m.start_us + day_us
    ]
    night = sum(1 for h in first_day if h < 5) / 5
    afternoon = sum(1 for h in first_day if 12 <= h < 16) / 4
    assert night < 0.35 * afternoon
    hosts = {e.client_addr: e.time_us for e in reversed(app)}  # first appearance of each host
    late = [addr for addr, t in hosts.items() if t >= m.start_us + 2 * day_us]
    assert len(late) == 1 and 4 <= len(hosts) <= 6
    assert len({e.application_name for e in app}) == 1


def test_analysts_work_weekday_office_hours(scenario: Parsed) -> None:
    m = scenario.manifest
    sessions = {_principal(e) for e in scenario.audits if e.audit_type == "SESSION"}
    analysts = [e for e in _benign_events(scenario) if _principal(e) in sessions]
    assert len({e.user for e in analysts}) >= 2
    hours = {(e.time_us - m.start_us) // (HOUR * 1000) % 24 for e in analysts}
    assert min(hours) >= 6 and max(hours) <= 20
    statements = {(e.session_id, e.statement_id) for e in analysts}
    assert len(statements) > 3 * 10 * 2  # tens a day each


def test_rows_follow_log_rows(scenario: Parsed) -> None:
    m = scenario.manifest
    copies = [e for e in scenario.audits if (e.statement or "").startswith("COPY")]
    if m.log_rows:
        assert all(e.rows is not None for e in scenario.audits)
        assert copies == []
    else:
        assert all(e.rows is None for e in scenario.audits)
        watched_copies = [e for e in copies if e.object_name == "crm.client_list"]
        assert len(watched_copies) == 3  # one nightly backup a day
        assert {(e.user, e.application_name, e.command) for e in copies} == {
            ("backup", "pg_dump", "SELECT")
        }


def test_half_us_is_when_the_paging_attack_had_read_half_the_table(scenario: Parsed) -> None:
    m = scenario.manifest
    paging = next(a for a in m.attacks if a.name == "stolen_credentials_paging")
    others = [a for a in m.attacks if a.name != "stolen_credentials_paging"]
    assert all(a.half_us is None for a in others)
    assert paging.half_us is not None
    assert paging.start_us < paging.half_us <= paging.end_us
    if not m.log_rows:
        return
    pages = [
        e
        for e in scenario.watched
        if _principal(e) == paging.principal and paging.start_us <= e.time_us <= paging.end_us
    ]
    read, half = 0, None
    for e in pages:
        assert e.rows is not None
        read += e.rows
        if half is None and 2 * read >= m.table_rows:
            half = e.time_us
    assert read == m.table_rows
    assert half == paging.half_us


def test_analysts_write_session_and_object_records_with_the_same_statement_id(
    scenario: Parsed,
) -> None:
    m = scenario.manifest
    analyst = next(a for a in m.attacks if a.name == "whole_table_select").principal
    mine = [
        e
        for e in scenario.watched
        if _principal(e) == analyst and e.time_us < m.attacks[-1].start_us
    ]
    kinds: dict[tuple[str, int | None], list[str | None]] = {}
    for e in mine:
        kinds.setdefault((e.session_id, e.statement_id), []).append(e.audit_type)
    assert kinds and all(v == ["OBJECT", "SESSION"] for v in kinds.values())
    whole = [e for e in mine if (e.statement or "").rstrip(";") == "SELECT * FROM crm.client_list"]
    assert len(whole) == 2
    if m.log_rows:
        assert {e.rows for e in whole} == {m.table_rows}


def test_the_same_seed_writes_the_same_bytes_and_another_seed_another_world(
    tmp_path: Path,
) -> None:
    a = generate(tmp_path / "a.csv", seed=5, log_rows=True, days=3, scale=0.05)
    b = generate(tmp_path / "b.csv", seed=5, log_rows=True, days=3, scale=0.05)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert replace(a, path="") == replace(b, path="")
    c = generate(tmp_path / "c.csv", seed=6, log_rows=True, days=3, scale=0.05)
    assert c.table_rows != a.table_rows
    assert c.start_us != a.start_us or c.benign != a.benign
    assert [x.start_us - a.start_us for x in a.attacks] != [
        x.start_us - c.start_us for x in c.attacks
    ]
    assert {p.user for p in c.benign} != {p.user for p in a.benign}


def test_benign_traffic_does_not_depend_on_the_attacks_written(tmp_path: Path) -> None:
    quiet = generate(tmp_path / "quiet.csv", seed=7, log_rows=False, days=3, scale=0.05, attacks=())
    loud = generate(
        tmp_path / "loud.csv",
        seed=7,
        log_rows=False,
        days=3,
        scale=0.05,
        attacks=("new_principal_batches",),
    )
    assert quiet.attacks == [] and [a.name for a in loud.attacks] == ["new_principal_batches"]
    intruder = loud.attacks[0].principal.user
    loud_rows = _rows(tmp_path / "loud.csv")
    # its connection is announced before the user is known: drop its backend's records by session
    sessions = {row[5] for row in loud_rows if row[1] == intruder}
    assert sessions
    assert [row for row in loud_rows if row[5] not in sessions] == _rows(tmp_path / "quiet.csv")
    assert quiet.benign == loud.benign


def _seed_for(prefix: str) -> int:
    """A seed whose tamper statement starts with `prefix` (the seed picks the variant)."""
    for seed in range(200):
        plan = next(p for p in World(seed, False, 3, 0.05).plans if p.name == "audit_tamper")
        if plan.detail.split(": ", 1)[1].startswith(prefix):
            return seed
    raise AssertionError(f"no seed for {prefix}")


@pytest.mark.parametrize(
    "variant",
    ["REVOKE", "ALTER SYSTEM SET pgaudit.role", "ALTER ROLE", "SET pgaudit.role", "DROP EXTENSION"],
)
def test_the_world_after_a_tamper_is_consistent(tmp_path: Path, variant: str) -> None:
    path = tmp_path / "tamper.csv"
    m = generate(path, seed=_seed_for(variant), log_rows=True, days=3, scale=0.05)
    parsed = _parse(path, m)
    tamper = m.attacks[-1]
    record = next(
        e
        for e in parsed.audits
        if e.time_us == tamper.start_us
        and e.audit_type == "SESSION"
        and e.user == tamper.principal.user
    )
    assert record.statement is not None and record.statement.startswith(variant)
    assert record.rows == 0
    after = [e for e in parsed.audits if e.time_us > tamper.start_us]
    if variant == "REVOKE":
        assert record.class_ == "ROLE" and record.object_type == "TABLE"
        assert not any(
            e.audit_type == "OBJECT" and e.object_name == "crm.client_list" for e in after
        )
        assert any(e.audit_type == "OBJECT" for e in after) or not after
    elif variant == "ALTER SYSTEM SET pgaudit.role":
        assert record.class_ == "DDL" and record.command == "ALTER SYSTEM"
        late = [e for e in after if e.time_us > tamper.start_us + 60_000_000]
        assert late == [] or all(e.audit_type == "SESSION" for e in late)
    elif variant == "ALTER ROLE":
        victim = record.statement.split()[2].strip('"')
        started_after = {
            e.session_id
            for e in after
            if e.user == victim
            and int(e.session_id.split(".")[0], 16) * 1_000_000 > tamper.start_us
        }
        assert started_after  # she came back after it: her OBJECT records only
        assert not any(e.session_id in started_after and e.audit_type == "SESSION" for e in after)
    elif variant == "SET pgaudit.role":
        assert record.class_ == "MISC" and record.command == "SET"
        assert not any(e.session_id == record.session_id for e in after)
    else:
        assert record.class_ == "DDL" and record.command == "DROP EXTENSION"
        assert any(e.object_name == "crm.client_list" for e in after)  # still audited


def test_the_command_line_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.csv"
    assert main([str(out), "--seed", "3", "--days", "3", "--scale", "0.05", "--log-rows"]) == 0
    text = capsys.readouterr().out
    assert "records" in text and "audit_tamper" in text
    assert Manifest.from_json(out.with_suffix(".json").read_text("utf-8")).log_rows


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown attacks"):
        generate(tmp_path / "x.csv", seed=1, log_rows=False, attacks=("nope",))
    with pytest.raises(ValueError, match="3 days"):
        generate(tmp_path / "x.csv", seed=1, log_rows=False, days=2)
