"""An outbox that cannot be written (a full or failed disk) never stops detection or the
dashboard: the alert shows as not queued, and the health line says why."""

from __future__ import annotations

from pathlib import Path

from alerts.center import AlertCenter
from alerts.local import LocalSink
from alerts.outbox import OUTBOX_FILE, Outbox
from alerts.rules import Rules
from core.findings import Severity
from core.view import PageRequest
from tablewatch.live import LiveEngine
from tests.unit.enginekit import at, engine, ev

NOW = at(day=3, hour=10)


async def test_a_broken_outbox_is_shown_and_never_stops_the_engine(tmp_path: Path) -> None:
    center = AlertCenter(
        Outbox(tmp_path / OUTBOX_FILE),
        [LocalSink(tmp_path / "alerts.jsonl")],
        Rules(),
        host="db1",
        clock=lambda: NOW,
    )
    live = LiveEngine(engine(learning_hours=0), center, clock=lambda: NOW)
    center.outbox._db.close()  # what a failed disk looks like to SQLite: every statement fails
    bulk = ev(NOW - 1, "SELECT * FROM crm.client_list", user="mallory", rows=50_000)
    found = live.feed([bulk])  # a critical finding: the rule tries to page
    assert [f.severity for f in found] == [Severity.CRITICAL]
    snap = await live.snapshot()
    (alert,) = snap.alerts
    (delivery,) = alert.deliveries
    assert delivery.state == "failed" and delivery.detail.startswith("not queued: ")
    assert OUTBOX_FILE in delivery.detail
    (health,) = [s for s in snap.sources if s.name == "alerts"]
    assert health.state == "error" and "cannot queue alerts" in health.detail
    paged = await live.page(PageRequest(alert.principal, Severity.CRITICAL, "", "ann"))
    assert [d.state for d in paged.deliveries] == ["failed"]  # refused visibly, not a crash
    center.tick()  # the rules' clock keeps running
    center.flush()
