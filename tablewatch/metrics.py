"""Prometheus metrics: a custom collector over the live engine, read at scrape time.

Nothing is counted on the hot path for Prometheus' sake: the engine, the sources and the alert
center keep their own counters, and `collect()` turns them into metric families when scraped
(prometheus/client_python's custom-collector pattern). Labels come from a bounded set only:
`table`, `severity`, `reason`, `source`, `sink`, `state`, and `principal` for the `top_k` most
anomalous readers, the rest folded into `principal="other"`. Never a label from statement text,
parameters or customer values; a principal's label is its user, client and application, made
safe (control characters escaped) and bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.findings import PrincipalKey, Severity
from core.safetext import safe
from core.sources import SourceHealth
from tablewatch.live import LiveEngine

PREFIX: Final = "tablewatch_"
LABEL_CHARS: Final = 120
OTHER: Final = "other"
SEVERITIES: Final = [s for s in Severity]


def principal_label(p: PrincipalKey) -> str:
    """`user@client/application`, safe and bounded (a label value, never a statement).

    >>> principal_label(PrincipalKey("ann", "10.0.0.7", "psql", "crm.t"))
    'ann@10.0.0.7/psql'
    """
    return safe(f"{p.user}@{p.client_addr or '?'}/{p.application_name}", LABEL_CHARS)


def _stamp(h: SourceHealth) -> float | None:
    return None if h.last_event_time is None else h.last_event_time.timestamp()


_SOURCE_METRICS: Final[
    tuple[
        tuple[
            str,
            type[GaugeMetricFamily] | type[CounterMetricFamily],
            str,
            Callable[[SourceHealth, float], float | None],
        ],
        ...,
    ]
] = (
    ("source_up", GaugeMetricFamily, "1 when the source works, 0 when it is in error.",
     lambda h, now: 0 if h.state == "error" else 1),
    ("source_last_event_timestamp_seconds", GaugeMetricFamily,
     "When the newest event the source read was logged (Unix time).",
     lambda h, now: _stamp(h)),
    ("source_lag_seconds", GaugeMetricFamily,
     "Seconds between now and the newest event the source read.",
     lambda h, now: None if (t := _stamp(h)) is None else max(0.0, now - t)),
    ("source_behind_bytes", GaugeMetricFamily, "Bytes of the log written but not read yet.",
     lambda h, now: h.bytes_behind),
    ("source_events", CounterMetricFamily, "Access events the source produced.",
     lambda h, now: h.events),
    ("source_records", CounterMetricFamily, "Log records the source read.",
     lambda h, now: h.records),
    ("source_parse_errors", CounterMetricFamily,
     "Log records the source could not parse (counted and skipped).",
     lambda h, now: h.malformed),
    ("source_lost_bytes", CounterMetricFamily,
     "Bytes of the log lost before they could be read (truncated or rotated away).",
     lambda h, now: h.lost_bytes),
)  # fmt: skip
"""Per source: name, kind, help, value (None: no sample)."""


class EngineCollector(Collector):
    """The metrics of a `LiveEngine`: its engine, its sources, its alert center."""

    def __init__(self, live: LiveEngine, top_k: int = 50) -> None:
        self.live = live
        self.top_k = top_k

    def collect(self) -> Iterator[Metric]:
        """Every family, built now."""
        yield from self._reads()
        yield from self._principals()
        yield from self._findings()
        yield from self._sources()
        yield from self._alerts()

    def describe(self) -> Iterator[Metric]:
        """Nothing to describe ahead: the families are built at scrape time."""
        return iter(())

    # the watched tables ---------------------------------------------------------------------

    def _reads(self) -> Iterator[Metric]:
        engine = self.live.engine
        reads = CounterMetricFamily(
            PREFIX + "reads",
            "Statements read from a watched table, by the reader's severity at the time.",
            labels=["table", "severity"],
        )
        rows = CounterMetricFamily(
            PREFIX + "rows_read",
            "Rows read from a watched table (logged by pgaudit, or estimated from the "
            "statement's shape), by the reader's severity at the time.",
            labels=["table", "severity"],
        )
        counted = engine.read_counts()
        for table, (statements, total) in counted.items():
            for sev in SEVERITIES:
                reads.add_metric([table, sev.label], statements[sev])
                rows.add_metric([table, sev.label], total[sev])
        yield reads
        yield rows
        size = GaugeMetricFamily(
            PREFIX + "table_rows",
            "The watched table's size in rows, as configured, learned or read from the database.",
            labels=["table"],
        )
        for table in counted:
            known = engine.table_rows(table)
            if known is not None:
                size.add_metric([table], known)
        yield size
        unaudited = CounterMetricFamily(
            PREFIX + "unaudited_tuples",
            "Tuples the watched table's own statistics counted as read that its audit records "
            "do not account for (audit gaps; needs [database]).",
            labels=["table"],
        )
        for table, tuples in engine.gap_tuples.items():
            unaudited.add_metric([table], tuples)
        yield unaudited
        events = CounterMetricFamily(
            PREFIX + "events", "Access events the engine has processed.", engine.events
        )
        yield events
        learning = GaugeMetricFamily(
            PREFIX + "learning",
            "1 while habits are still being learned (habit signals recorded, not raised).",
            int(engine.learning()),
        )
        yield learning

    # readers ----------------------------------------------------------------------------------

    def _principals(self) -> Iterator[Metric]:
        engine = self.live.engine
        snap = engine.snapshot(max(self.live.clock(), engine.now_us), limit=self.top_k)
        score = GaugeMetricFamily(
            PREFIX + "principal_score",
            f"Anomaly score (0-100) of the {self.top_k} most anomalous readers; the rest are "
            'folded into principal="other" (their highest score).',
            labels=["principal", "table"],
        )
        rows = GaugeMetricFamily(
            PREFIX + "principal_rows_last_hour",
            f"Rows read in the last hour by the {self.top_k} most anomalous readers; the rest "
            'are folded into principal="other" (their sum).',
            labels=["principal", "table"],
        )
        shown: set[tuple[str, str, str, str]] = set()
        for view in snap.readers:
            p = view.principal
            shown.add((p.user, p.client_addr, p.application_name, p.table))
            label = principal_label(p)
            score.add_metric([label, p.table], view.score)
            rows.add_metric([label, p.table], view.rows_hour)
        folded, by_severity = engine.summary(snap.taken_us, shown)
        for table, (top, total) in sorted(folded.items()):
            score.add_metric([OTHER, table], top)
            rows.add_metric([OTHER, table], total)
        yield score
        yield rows
        readers = GaugeMetricFamily(
            PREFIX + "readers",
            "Readers (user, client, application) of a watched table seen lately, by severity.",
            labels=["table", "severity"],
        )
        for table in engine.read_counts():
            for sev in SEVERITIES:
                readers.add_metric([table, sev.label], by_severity.get((table, sev), 0))
        yield readers

    def _findings(self) -> Iterator[Metric]:
        engine = self.live.engine
        findings = CounterMetricFamily(
            PREFIX + "findings",
            "Findings raised, by severity and reason (each reason of a finding counted).",
            labels=["severity", "reason"],
        )
        for (sev, code), n in sorted(engine.reasons_raised.items()):
            findings.add_metric([sev.label, code], n)
        yield findings

    # sources ----------------------------------------------------------------------------------

    def _sources(self) -> Iterator[Metric]:
        now = time.time()
        families = {
            name: kind(PREFIX + name, text, labels=["source"])
            for name, kind, text, _ in _SOURCE_METRICS
        }
        for h in self.live.source_health():
            source = [safe(h.name, LABEL_CHARS)]
            for name, _, _, value in _SOURCE_METRICS:
                measured = value(h, now)
                if measured is not None:
                    families[name].add_metric(source, measured)
        yield from families.values()

    # alerts -----------------------------------------------------------------------------------

    def _alerts(self) -> Iterator[Metric]:
        center = self.live.alerts
        attempts = CounterMetricFamily(
            PREFIX + "alert_deliveries",
            "Alert delivery attempts since the start, by sink and outcome (sent, failed, retry).",
            labels=["sink", "outcome"],
        )
        suppressed = CounterMetricFamily(
            PREFIX + "alerts_suppressed",
            "Findings flood control kept from paging.",
            center.suppressed if center is not None else 0,
        )
        depth = GaugeMetricFamily(
            PREFIX + "outbox_depth",
            "Alert deliveries still queued (waiting for a sink, or retrying).",
            center.queued() if center is not None else 0,
        )
        active = GaugeMetricFamily(
            PREFIX + "alerts_open",
            "Alerts not resolved, by state (active, acknowledged).",
            labels=["state"],
        )
        if center is not None:
            for sink in center.sinks:
                for outcome in ("sent", "failed", "retry"):
                    n = center.dispatcher.attempts.get((sink, outcome), 0)
                    attempts.add_metric([sink, outcome], n)
            states = [a.state for a in center.views()]
            for state in ("active", "acknowledged"):
                active.add_metric([state], states.count(state))
        yield from (attempts, suppressed, depth, active)
