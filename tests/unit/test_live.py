"""The live engine the dashboard sees: tail, statements, snoozes, pages, marks, sources."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alerts.center import AlertCenter
from alerts.local import LocalSink
from alerts.outbox import OUTBOX_FILE, Outbox
from alerts.rules import Rules
from collectors.pgstat import DatabaseLink
from core.dbside import Backend
from core.events import AccessEvent
from core.findings import Code, PrincipalKey, Severity
from core.sources import EventBatch, SourceHealth
from core.view import ActionRefused, PageRequest
from tablewatch.live import STATEMENT_CHARS, LiveEngine
from tablewatch.pgcluster import free_port
from tablewatch.trail import TRAIL_FILE, OperatorTrail, TrailError
from tests.alertkit import delivering
from tests.unit.enginekit import TABLE, at, engine, ev

NOW = at(day=3, hour=10)
BULK = "SELECT * FROM crm.client_list"
MALLORY = PrincipalKey("mallory", "10.9.9.9", "psql", TABLE)


def _center(tmp_path: Path, rules: Rules | None = None, sink: Path | None = None) -> AlertCenter:
    return AlertCenter(
        Outbox(tmp_path / "state" / OUTBOX_FILE),
        [LocalSink(sink or tmp_path / "alerts.jsonl")],
        rules or Rules(page_on=None),
        host="db1",
        clock=lambda: NOW,
    )


def _live(tmp_path: Path, rules: Rules | None = None) -> LiveEngine:
    return LiveEngine(
        engine(learning_hours=0),
        _center(tmp_path, rules),
        trail=OperatorTrail(tmp_path),
        clock=lambda: NOW,
    )


def _bulk(t: int = NOW - 10_000_000) -> AccessEvent:
    return ev(t, BULK, user="mallory", addr="10.9.9.9", app="psql", rows=50_000)


async def test_snapshot_carries_the_tail_and_each_readers_latest_statements(
    tmp_path: Path,
) -> None:
    live = _live(tmp_path)
    lookups = [ev(NOW - 60_000_000 + i, params=(str(i),)) for i in range(20)]
    live.feed(lookups)
    live.feed([_bulk()])
    snap = await live.snapshot()
    assert snap.taken_us == NOW
    assert [e.statement for e in snap.tail[-2:]] == [lookups[-1].statement, BULK]
    top = snap.readers[0]
    assert top.principal == MALLORY and top.severity is Severity.CRITICAL
    assert [s.statement for s in top.seen] == [BULK]
    app = next(r for r in snap.readers if r.principal.user == "app")
    assert len(app.seen) == 8 and app.seen[-1].parameters == ("19",)


async def test_a_huge_statement_is_kept_cut_with_a_mark(tmp_path: Path) -> None:
    live = _live(tmp_path)
    huge = BULK + " WHERE note = '" + "x" * 2_000_000 + "'"
    live.feed([ev(NOW - 1, huge, user="mallory", addr="10.9.9.9", app="psql")])
    snap = await live.snapshot()
    seen = snap.readers[0].seen[0].statement
    assert seen is not None and len(seen) == STATEMENT_CHARS and seen.endswith("…")
    # the live tail too: 500 reads of a 1 MB statement must not pin 500 MB
    tailed = snap.tail[-1].statement
    assert tailed is not None and len(tailed) == STATEMENT_CHARS and tailed.endswith("…")


async def test_page_goes_through_the_local_sink_and_the_operator_trail(tmp_path: Path) -> None:
    live = _live(tmp_path)
    live.feed([_bulk()])
    reader = (await live.snapshot()).readers[0]
    async with delivering(live.alerts):
        alert = await live.page(
            PageRequest(
                reader.principal, Severity.CRITICAL, "pulling the list", "ann", reader.reasons
            )
        )
    assert [(d.sink, d.state) for d in alert.deliveries] == [("local", "sent")]
    assert (await live.snapshot()).alerts == (alert,)
    recorded = json.loads((tmp_path / "alerts.jsonl").read_text())
    assert recorded["user"] == "mallory" and recorded["note"] == "pulling the list"
    assert recorded["operator"] == "ann" and recorded["severity"] == "critical"
    assert recorded["key"] == alert.key and "bulk_read" not in recorded["summary"]
    assert "50,000 rows" in recorded["summary"]
    assert stat.S_IMODE(os.stat(tmp_path / "alerts.jsonl").st_mode) == 0o600
    trail = [json.loads(line) for line in (tmp_path / TRAIL_FILE).read_text().splitlines()]
    assert [(t["action"], t["operator"], t["key"]) for t in trail] == [("page", "ann", alert.key)]


async def test_a_sink_that_fails_is_a_failed_delivery_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the sink wants a folder")
    live = LiveEngine(engine(), _center(tmp_path, sink=tmp_path / "blocked" / "alerts.jsonl"))
    async with delivering(live.alerts):
        alert = await live.page(PageRequest(MALLORY, Severity.WARNING, "", "ann"))
    (delivery,) = alert.deliveries
    assert delivery.state == "queued"  # kept, and retried: the disk may come back
    assert delivery.detail.startswith("retry in ") and "blocked" in delivery.detail


async def test_page_without_any_sink_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ActionRefused, match="no alert sink"):
        await LiveEngine(engine()).page(PageRequest(MALLORY, Severity.WARNING, "", "ann"))


async def test_marked_expected_drops_reasons_and_survives_a_restart(tmp_path: Path) -> None:
    live = _live(tmp_path)
    live.feed([_bulk()])
    await live.mark_expected(MALLORY, "quarterly export", "ann")
    reader = (await live.snapshot()).readers[0]
    assert reader.severity is Severity.NONE and reader.expected == "quarterly export"
    assert live.alerts is not None
    live.alerts.outbox.close()  # the process ends
    again = _live(tmp_path)  # a new process: the mark comes back from the operator trail
    again.feed([_bulk()])
    reader = (await again.snapshot()).readers[0]
    assert reader.expected == "quarterly export"
    assert reader.severity < Severity.CRITICAL
    assert {r.code for r in reader.reasons} <= {Code.EXPECTED, Code.FIRST_SEEN}


async def test_snooze_is_shown_until_it_ends_and_can_be_lifted(tmp_path: Path) -> None:
    now = [NOW]
    live = LiveEngine(engine(), clock=lambda: now[0])
    live.feed([_bulk()])
    await live.snooze(MALLORY, 3600, "ann")
    assert (await live.snapshot()).readers[0].snoozed_until_us == NOW + 3_600_000_000
    assert live.snoozed(MALLORY)
    now[0] += 3_600_000_000
    assert (await live.snapshot()).readers[0].snoozed_until_us is None
    await live.snooze(MALLORY, 60, "ann")
    await live.snooze(MALLORY, 0, "ann")
    assert not live.snoozed(MALLORY)
    with pytest.raises(ActionRefused):
        await live.snooze(MALLORY, -1, "ann")


class _Flaky:
    """A real source that fails once, then delivers one batch and stays open."""

    name = "flaky"

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def batches(self) -> AsyncIterator[EventBatch]:
        if self.fail:
            raise OSError("log directory unreadable")
        yield EventBatch([_bulk()], {})
        await asyncio.Event().wait()

    def health(self) -> SourceHealth:
        return SourceHealth(self.name, "ok")


async def test_a_failing_source_is_shown_down_then_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tablewatch.live.RESTART_SECONDS", 0.2)
    live = _live(tmp_path)
    live.attach(_Flaky(fail=True), make=lambda: _Flaky(fail=False))
    task = asyncio.create_task(live.run())
    try:
        await asyncio.sleep(0.05)
        (health,) = (await live.snapshot()).sources
        assert health.state == "error" and "unreadable" in health.detail
        for _ in range(100):
            snap = await live.snapshot()
            if snap.readers:
                break
            await asyncio.sleep(0.02)
        assert snap.sources[0].state == "ok" and snap.readers[0].principal == MALLORY
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_an_unreadable_trail_stops_the_start_with_one_line(tmp_path: Path) -> None:
    (tmp_path / TRAIL_FILE).mkdir()
    with pytest.raises(TrailError, match="cannot read the operator trail"):
        _live(tmp_path)


def test_an_unreadable_trail_line_is_counted_not_fatal(tmp_path: Path) -> None:
    (tmp_path / TRAIL_FILE).write_text('{"action": "expected"}\nnot json\n')
    trail = OperatorTrail(tmp_path)
    assert list(trail.marks()) == []
    assert trail.skipped == 2


async def test_the_snapshot_lists_the_top_readers_and_counts_them_all(tmp_path: Path) -> None:
    live = _live(tmp_path)
    live.feed([ev(NOW - 1_000_000 + i, addr=f"10.1.{i // 250}.{i % 250}") for i in range(250)])
    snap = await live.snapshot()
    assert len(snap.readers) == 200 and snap.readers_total == 250


async def test_a_page_is_sent_even_when_the_trail_cannot_be_written(tmp_path: Path) -> None:
    live = _live(tmp_path)
    (tmp_path / TRAIL_FILE).mkdir()  # a folder where the trail file should be
    async with delivering(live.alerts):
        alert = await live.page(PageRequest(MALLORY, Severity.CRITICAL, "now", "ann"))
    assert [(d.sink, d.state) for d in alert.deliveries] == [
        ("local", "sent"),
        ("operator-trail", "failed"),
    ]
    assert json.loads((tmp_path / "alerts.jsonl").read_text())["note"] == "now"
    with pytest.raises(ActionRefused, match="operator trail"):
        await live.mark_expected(MALLORY, "x", "ann")  # not paging: refused, nothing half-done


async def test_a_critical_finding_pages_by_itself_and_operators_ack_and_resolve_it(
    tmp_path: Path,
) -> None:
    live = _live(tmp_path, Rules())
    async with delivering(live.alerts):
        live.feed([_bulk()])
        (alert,) = (await live.snapshot()).alerts
        assert alert.origin == "rule" and alert.principal == MALLORY
        acked = await live.acknowledge(alert.key, "looking", "ann")
        assert acked.state == "acknowledged" and acked.by == "ann"
        assert [(d.sink, d.state) for d in acked.deliveries] == [("local", "acked")]
        done = await live.resolve(alert.key, "role revoked", "ann")
        assert [(d.sink, d.state) for d in done.deliveries] == [("local", "resolved")]
    lines = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(r["action"], r["actor"]) for r in lines] == [
        ("trigger", "tablewatch"),
        ("acknowledge", "ann"),
        ("resolve", "ann"),
    ]
    trail = [json.loads(line) for line in (tmp_path / TRAIL_FILE).read_text().splitlines()]
    assert [(t["action"], t["operator"], t["note"]) for t in trail] == [
        ("acknowledge", "ann", "looking"),
        ("resolve", "ann", "role revoked"),
    ]
    with pytest.raises(ActionRefused, match="already resolved"):
        await live.acknowledge(alert.key, "", "bob")


async def test_the_snapshot_counts_what_flood_control_held_back_and_what_is_queued(
    tmp_path: Path,
) -> None:
    live = _live(tmp_path, Rules(flood_total=1))
    live.feed([_bulk(), ev(NOW - 5_000_000, BULK, user="eve", addr="10.8.8.8", rows=50_000)])
    snap = await live.snapshot()
    assert len(snap.alerts) == 1 and snap.suppressed == 1 and snap.outbox == 1


def _copying(pid: int = 4242) -> Backend:
    """mallory's COPY of the table, as the activity poll sees it."""
    return Backend(
        pid, "mallory", "crm", "10.9.9.9", "psql", "active", "copy", (TABLE,),
        "COPY crm.client_list TO STDOUT", NOW - 300_000_000, NOW - 123_000_000,
        NOW - 123_000_000,
    )  # fmt: skip


def _with_database(tmp_path: Path) -> LiveEngine:
    """A live engine whose database does not answer (nothing listens on its port), mallory's
    COPY among the backends the engine knows."""
    live = LiveEngine(
        engine(learning_hours=0),
        trail=OperatorTrail(tmp_path),
        clock=lambda: NOW,
        database=DatabaseLink(f"postgresql://tw_monitor@127.0.0.1:{free_port()}/crm"),
    )
    live.engine._backends[("mallory", "10.9.9.9", "psql", TABLE)] = (_copying(),)
    return live


async def test_signal_backend_without_a_database_is_refused(tmp_path: Path) -> None:
    live = _live(tmp_path)
    live.feed([_bulk()])
    live.engine._backends[("mallory", "10.9.9.9", "psql", TABLE)] = (_copying(),)
    assert (await live.snapshot()).readers[0].backends == (_copying(),)
    with pytest.raises(ActionRefused) as refused:
        await live.signal_backend(MALLORY, 4242, False, "ann")
    assert str(refused.value) == (
        "no [database] dsn is configured: tablewatch cannot reach the server's backends"
    )
    assert not (tmp_path / TRAIL_FILE).exists()  # nothing was attempted


async def test_signal_backend_only_signals_the_readers_current_backends(tmp_path: Path) -> None:
    live = _with_database(tmp_path)
    for principal, pid in (
        (MALLORY, 4243),  # not one of hers
        (PrincipalKey("eve", "10.9.9.9", "psql", TABLE), 4242),  # hers, not eve's
        (PrincipalKey("mallory", "10.9.9.9", "psql", "crm.orders"), 4242),  # another table
    ):
        with pytest.raises(ActionRefused) as refused:
            await live.signal_backend(principal, pid, True, "ann")
        who = f"{principal.user}@10.9.9.9"
        assert str(refused.value) == (
            f"backend {pid} is no longer reading {principal.table} for {who}"
        )
    assert not (tmp_path / TRAIL_FILE).exists()


async def test_a_signal_that_reached_for_the_database_is_in_the_trail(tmp_path: Path) -> None:
    live = _with_database(tmp_path)
    with pytest.raises(ActionRefused, match="cannot reach the database") as refused:
        await live.signal_backend(MALLORY, 4242, True, "ann")
    assert str(refused.value) == (
        "cannot reach the database to signal backend 4242: cannot connect: connection refused"
    )
    (entry,) = [json.loads(line) for line in (tmp_path / TRAIL_FILE).read_text().splitlines()]
    assert {k: entry[k] for k in ("action", "operator", "user", "table", "pid", "kind")} == {
        "action": "terminate",
        "operator": "ann",
        "user": "mallory",
        "table": TABLE,
        "pid": 4242,
        "kind": "copy",
    }
    assert entry["outcome"] == f"refused: {refused.value}"
    (tmp_path / TRAIL_FILE).unlink()
    (tmp_path / TRAIL_FILE).mkdir()  # the trail cannot be written: said with the answer
    with pytest.raises(ActionRefused) as refused:
        await live.signal_backend(MALLORY, 4242, False, "ann")
    assert str(refused.value).startswith("cannot reach the database to signal backend 4242")
    assert "(and cannot write the operator trail" in str(refused.value)
