"""The demo workload: real-format csvlog that the real reader parses cleanly and the real engine
scores as the demo promises (normal readers stay quiet, the intruder turns critical in time)."""

from __future__ import annotations

import asyncio
import csv
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from collectors.demo import (
    DEMO_EXPECTED,
    DEMO_INTRUDER,
    DEMO_READERS,
    DEMO_ROWS,
    DEMO_TABLE,
    DemoReader,
    DemoWorkload,
)
from collectors.events import EventBuilder, ParseStats
from collectors.logfile import read_events
from collectors.prefix import DEFAULT_PREFIX
from collectors.tail import LogTail
from core.engine import Engine, EngineConfig
from core.events import AccessEvent
from core.findings import Code, Finding, PrincipalKey, Severity
from core.sources import EventBatch
from core.tables import WatchedTables
from tablewatch.replay import feed

T0 = 1_780_000_000.0
"""2026-05-28 20:26:40 UTC: when the fake clock starts."""
LIVE_SECONDS = 120.0
CSVLOG_COLUMNS = 26  # PostgreSQL 14-17
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC")


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Demo:
    workload: DemoWorkload
    history_records: int
    live_records: int
    live_start_us: int
    findings: list[Finding]
    engine: Engine
    stats: ParseStats


def config() -> EngineConfig:
    return EngineConfig(
        tables=(DEMO_TABLE,), expected=DEMO_EXPECTED, learning_period_us=3600 * 10**6
    )


def replay(path: Path) -> tuple[Engine, list[Finding], ParseStats]:
    """The engine over the file exactly as `tablewatch replay` feeds it."""
    engine = Engine(config())
    stats = ParseStats()
    builder = EventBuilder(WatchedTables([DEMO_TABLE]), stats, control=True)
    found = feed(engine, path, "csvlog", builder, DEFAULT_PREFIX)
    found.sort(key=lambda f: f.time_us)
    return engine, found, stats


def simulate(directory: Path, *, seed: int = 0, live: float = LIVE_SECONDS) -> Demo:
    """History, then `live` seconds at speed 1 driven by a fake clock in 0.1 s steps."""
    clock = FakeClock(T0)
    workload = DemoWorkload(directory, seed=seed, clock=clock)
    history = workload.write_history(3)
    clock.t += 0.25
    written = 0
    for _ in range(int(live * 10)):
        written += workload.write_until(clock.t)
        clock.t += 0.1
    assert workload.live_start is not None
    engine, found, stats = replay(workload.log_path)
    return Demo(workload, history, written, int(workload.live_start * 1e6), found, engine, stats)


def key(reader: DemoReader) -> PrincipalKey:
    return PrincipalKey(reader.user, reader.client_addr, reader.application_name, str(DEMO_TABLE))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return simulate(tmp_path_factory.mktemp("demo"))


def test_the_history_ends_the_learning_period_and_gives_everyone_a_habit(tmp_path: Path) -> None:
    workload = DemoWorkload(tmp_path, clock=FakeClock(T0))
    began = time.perf_counter()
    written = workload.write_history(3)
    assert time.perf_counter() - began < 1.0
    assert 1000 < written < 6000  # compact
    engine, found, stats = replay(workload.log_path)
    assert stats.malformed == 0
    assert not engine.learning()
    assert not engine.snapshot().learning
    first = engine.baselines.learning_started_us
    assert first is not None and T0 * 1e6 - first >= 3 * 86_400 * 10**6
    assert engine.now_us <= T0 * 1e6
    habits = engine.baselines.habits
    for reader in DEMO_READERS:
        assert (reader.user, reader.client_addr, reader.application_name, str(DEMO_TABLE)) in habits
    assert all(f.severity <= Severity.INFO for f in found), found


def test_the_intruder_turns_critical_with_a_bulk_read_within_45_s(demo: Demo) -> None:
    mine = [f for f in demo.findings if f.principal == key(DEMO_INTRUDER)]
    critical = [f for f in mine if f.severity is Severity.CRITICAL]
    assert critical, mine
    first = critical[0]
    assert Code.BULK_READ in [r.code for r in first.reasons]
    bulk = next(r for r in first.reasons if r.code == Code.BULK_READ)
    assert bulk.severity is Severity.CRITICAL and f"{DEMO_ROWS:,} rows" in bulk.detail
    assert 0 < first.time_us - demo.live_start_us < 45 * 10**6


def test_the_intruder_escalates_new_address_then_enumeration_then_bulk(demo: Demo) -> None:
    mine = [f for f in demo.findings if f.principal == key(DEMO_INTRUDER)]
    assert [f.severity for f in mine] == [Severity.INFO, Severity.WARNING, Severity.CRITICAL]
    info, warning, critical = mine
    assert info.reasons[0].code == Code.NEW_ADDRESS
    assert warning.reasons[0].code == Code.SEQUENTIAL_KEYS
    codes = {r.code for r in critical.reasons}
    assert {Code.OFFSET_WALK, Code.SEQUENTIAL_KEYS, Code.NEW_PRINCIPAL_VOLUME} <= codes
    start = demo.live_start_us
    assert 5 * 10**6 < info.time_us - start < warning.time_us - start < 20 * 10**6
    # each step is shown for a while before the next one
    assert critical.time_us - warning.time_us > 10 * 10**6


def test_normal_readers_never_rise_above_info(demo: Demo) -> None:
    normal = {key(r) for r in DEMO_READERS}
    raised = [f for f in demo.findings if f.principal in normal]
    assert all(f.severity <= Severity.INFO for f in raised), raised
    # the backup's COPY is seen and noted as expected (history and live), never paged
    backup = [f for f in raised if f.principal.user == "backup"]
    assert backup and all(r.code == Code.EXPECTED for f in backup for r in f.reasons)
    assert max(f.time_us for f in backup) > demo.live_start_us
    views = {v.principal: v for v in demo.engine.snapshot().readers}
    assert normal <= set(views)  # all of them read during the live part
    assert all(views[k].severity <= Severity.INFO for k in normal)
    assert set(views) == normal | {key(DEMO_INTRUDER)}


def test_every_record_is_a_whole_csvlog_row_that_parses(demo: Demo) -> None:
    assert demo.stats.malformed == 0, demo.stats.samples
    assert demo.stats.forged == 0
    with demo.workload.log_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, strict=True))
    assert len(rows) == demo.history_records + demo.live_records == demo.stats.records
    assert {len(r) for r in rows} == {CSVLOG_COLUMNS}
    assert all(STAMP.fullmatch(r[0]) for r in rows)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # written in time order
    audits = [r for r in rows if r[13].startswith("AUDIT: ")]
    assert len(audits) > 0.9 * len(rows)
    assert {r[11] for r in rows} == {"LOG"} and {r[12] for r in rows} == {"00000"}
    assert {r[23] for r in rows} == {"client backend", "not initialized"}
    # per session: lines count up by one, pgaudit's statement ids increase
    lines: dict[str, int] = {}
    statements: dict[str, int] = {}
    for r in rows:
        assert int(r[6]) == lines.get(r[5], 0) + 1
        lines[r[5]] = int(r[6])
        if r[13].startswith("AUDIT: "):
            statement_id = int(r[13].split(",")[1])
            assert statement_id >= statements.get(r[5], 0)
            statements[r[5]] = statement_id


def test_driver_traffic_binds_its_parameters_and_psql_types_them(demo: Demo) -> None:
    events = _events(demo.workload.log_path)
    api = [e for e in events if e.application_name == "crm-api"]
    assert api and all(e.parameters is not None and len(e.parameters) == 1 for e in api)
    assert {e.statement for e in api} >= {
        "SELECT id, name, email, phone FROM crm.client_list WHERE id = $1"
    }
    intruder = [e for e in events if e.client_addr == DEMO_INTRUDER.client_addr]
    assert all(e.parameters is None and e.statement is not None for e in intruder)
    walk = [int(e.statement.split()[-1].rstrip(";")) for e in intruder if "id = " in e.statement]
    assert walk[:30] == list(range(walk[0], walk[0] + 30))
    assert "SELECT * FROM crm.client_list;" in [e.statement for e in intruder]
    # the analyst's literal with a comma and a quote arrives intact through both quotings
    analyst = {e.statement for e in events if e.user == "mkovacs"}
    assert any("ILIKE '%Müller, J%'" in s or "O''Brien" in s for s in analyst if s)


def test_the_live_rate_is_a_lively_dashboard(demo: Demo) -> None:
    rate = demo.live_records / LIVE_SECONDS
    assert 15 <= rate <= 60, rate


def test_the_same_seed_and_clock_write_the_same_file(tmp_path: Path) -> None:
    one = simulate(tmp_path / "one", seed=3, live=40)
    two = simulate(tmp_path / "two", seed=3, live=40)
    other = simulate(tmp_path / "other", seed=4, live=40)
    data = one.workload.log_path.read_bytes()
    assert data == two.workload.log_path.read_bytes()
    assert data != other.workload.log_path.read_bytes()
    # however the live part is cut into batches
    clock = FakeClock(T0)
    batched = DemoWorkload(tmp_path / "batched", seed=3, clock=clock)
    batched.write_history(3)
    history = batched.log_path.stat().st_size
    clock.t += 0.25
    for step in (0.0, 7.3, 0.05, 20.0, 10.0):  # up to 37.35 s of the 40
        clock.t += step
        batched.write_until(clock.t)
    written = batched.log_path.read_bytes()
    assert len(written) > history + 100_000 and data.startswith(written)


def test_the_timeline_is_ordered_and_follows_the_speed(tmp_path: Path) -> None:
    normal = DemoWorkload(tmp_path).timeline()
    fast = DemoWorkload(tmp_path, speed=20).timeline()
    assert [t for t, _ in normal] == sorted(t for t, _ in normal)
    assert normal[0][0] == 0.0 and normal[-1][0] <= 60
    bulk = next(t for t, what in normal if "critical" in what)
    assert 25 <= bulk <= 35
    assert [(t / 20, w) for t, w in normal] == fast
    with pytest.raises(ValueError, match="speed"):
        DemoWorkload(tmp_path, speed=0)


async def test_run_appends_live_records_until_cancelled(tmp_path: Path) -> None:
    workload = DemoWorkload(tmp_path, seed=1, speed=20)
    workload.write_history(3)
    history = workload.log_path.stat().st_size
    before = time.time()
    task = asyncio.create_task(workload.run())
    await asyncio.sleep(1.2)  # 24 s of the timeline at speed 20: the intruder is paging
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = time.time()
    data = workload.log_path.read_bytes()
    assert len(data) > history and data.endswith(b"\n")
    events = _events(workload.log_path)
    live = [e for e in events if e.time_us >= before * 1e6]
    assert live and all(e.time_us <= after * 1e6 for e in live)
    assert any(e.client_addr == DEMO_INTRUDER.client_addr for e in live)
    size = workload.log_path.stat().st_size
    await asyncio.sleep(0.3)
    assert workload.log_path.stat().st_size == size  # nothing written once cancelled


async def test_the_log_tail_follows_the_demo_as_it_is_written(tmp_path: Path) -> None:
    workload = DemoWorkload(tmp_path, seed=2, speed=20)
    workload.write_history(3)
    stats = ParseStats()
    tail = LogTail(
        str(workload.log_path),
        EventBuilder(WatchedTables([DEMO_TABLE]), stats, control=True),
        fmt="csvlog",
        start="beginning",
        poll_interval=0.05,
        idle_flush=0.2,
    )
    batches = cast(AsyncGenerator[EventBatch, None], tail.batches())
    writer = asyncio.create_task(workload.run())
    events: list[AccessEvent] = []
    try:
        deadline = time.monotonic() + 10
        while not any(e.statement == "SELECT * FROM crm.client_list;" for e in events):
            assert time.monotonic() < deadline, "the whole-table read never came through"
            batch = await asyncio.wait_for(anext(batches), timeout=5)
            events.extend(batch.events)
    finally:
        writer.cancel()
        await batches.aclose()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert stats.malformed == 0, stats.samples
    engine = Engine(config())
    critical = [f for f in engine.process(events) if f.severity is Severity.CRITICAL]
    assert [f.principal for f in critical] == [key(DEMO_INTRUDER)]


def _events(path: Path) -> list[AccessEvent]:
    stats = ParseStats()
    builder = EventBuilder(WatchedTables([DEMO_TABLE]), stats)
    events = [e for batch in read_events(path, "csvlog", builder) for e in batch]
    assert stats.malformed == 0, stats.samples
    return events
