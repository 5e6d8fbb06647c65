"""Prometheus metrics at scrape time: names and help per the conventions, values from the
engine, the sources and the alert center, and a bounded number of series however many readers."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alerts.center import AlertCenter
from alerts.local import LocalSink
from alerts.outbox import OUTBOX_FILE, Outbox
from alerts.rules import Rules
from tablewatch.live import LiveEngine
from tablewatch.metrics import EngineCollector
from tests.alertkit import delivering, drained
from tests.unit.enginekit import TABLE, at, engine, ev

NOW = at(day=3, hour=10)


def scrape(
    live: LiveEngine, top_k: int = 50
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry()
    registry.register(EngineCollector(live, top_k))
    text = generate_latest(registry).decode()
    series: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("tablewatch_") and family.documentation
        for sample in family.samples:
            series.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return series


def live_engine(tmp_path: Path, rules: Rules | None = None) -> LiveEngine:
    center = AlertCenter(
        Outbox(tmp_path / OUTBOX_FILE),
        [LocalSink(tmp_path / "alerts.jsonl")],
        rules or Rules(),
        host="db1",
        clock=lambda: NOW,
    )
    return LiveEngine(engine(learning_hours=0), center, clock=lambda: NOW)


async def test_reads_rows_findings_and_alerts_are_exported(tmp_path: Path) -> None:
    live = live_engine(tmp_path)
    lookups = [ev(NOW - 60_000_000 + i, params=(str(i),), rows=1) for i in range(30)]
    bulk = ev(NOW - 1_000_000, "SELECT * FROM crm.client_list", user="mallory", rows=50_000)
    live.feed(lookups + [bulk])
    async with delivering(live.alerts, close=False):
        await drained(live.alerts)  # type: ignore[arg-type]
    m = scrape(live)

    def at_(severity: str) -> tuple[tuple[str, str], ...]:
        return (("severity", severity), ("table", TABLE))

    reads, rows = m["tablewatch_reads_total"], m["tablewatch_rows_read_total"]
    # each read counted at its reader's severity then: the app's first lookup and mallory's
    # bulk read came from new readers, the app's next 29 after it was seen (info)
    assert (reads[at_("none")], reads[at_("info")], reads[at_("critical")]) == (2, 29, 0)
    assert (rows[at_("none")], rows[at_("info")]) == (1 + 50_000, 29)
    assert m["tablewatch_events_total"][()] == 31
    assert m["tablewatch_table_rows"][(("table", TABLE),)] == 50_000
    readers = m["tablewatch_readers"]
    assert (readers[at_("warning")], readers[at_("critical")]) == (1, 1)
    findings = m["tablewatch_findings_total"]
    assert findings[(("reason", "bulk_read"), ("severity", "critical"))] == 1
    assert findings[(("reason", "sequential_keys"), ("severity", "warning"))] == 1
    top = m["tablewatch_principal_score"]
    assert top[(("principal", "mallory@10.0.0.1/crm-web"), ("table", TABLE))] == 100
    sent = (("outcome", "sent"), ("sink", "local"))
    assert m["tablewatch_alert_deliveries_total"][sent] == 1
    assert m["tablewatch_outbox_depth"][()] == 0
    assert m["tablewatch_alerts_open"][(("state", "active"),)] == 1
    live.alerts.outbox.close()  # type: ignore[union-attr]


def test_many_principals_fold_into_other_and_the_series_stay_bounded(tmp_path: Path) -> None:
    live = live_engine(tmp_path, Rules(page_on=None))
    events = [
        ev(
            NOW - 50_000_000 + i,
            params=(str(i),),
            rows=1,
            addr=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            session=f"s{i}",
        )
        for i in range(100_000)
    ]
    live.feed(events)
    m = scrape(live, top_k=50)
    scores = m["tablewatch_principal_score"]
    rows = m["tablewatch_principal_rows_last_hour"]
    assert len(scores) == 51 and len(rows) == 51  # the top 50 and "other"
    other = (("principal", "other"), ("table", TABLE))
    assert rows[other] + sum(v for k, v in rows.items() if k != other) == 100_000
    assert sum(len(v) for v in m.values()) < 200
    live.alerts.outbox.close()  # type: ignore[union-attr]


def test_hostile_principal_labels_are_escaped_and_bounded(tmp_path: Path) -> None:
    live = live_engine(tmp_path, Rules(page_on=None))
    evil = "\x1b[31m" + "x" * 5000 + '"}\n# HELP fake'
    live.feed([ev(NOW - 1, "SELECT * FROM crm.client_list", user=evil, rows=2000)])
    (label,) = [dict(k)["principal"] for k in scrape(live)["tablewatch_principal_score"]]
    assert "\x1b" not in label and "\n" not in label and len(label) <= 120
    live.alerts.outbox.close()  # type: ignore[union-attr]


def test_a_source_in_error_is_down(tmp_path: Path) -> None:
    from tests.tui.world import BrokenSource

    live = live_engine(tmp_path, Rules(page_on=None))
    live.attach(BrokenSource())
    m = scrape(live)
    assert m["tablewatch_source_up"][(("source", "pgaudit-log"),)] == 0
    live.alerts.outbox.close()  # type: ignore[union-attr]
