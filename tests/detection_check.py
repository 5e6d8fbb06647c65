"""Replays a generated scenario through the real parser and engine and grades the findings.

What each attack must give (issue 3): the severity, and the event time it must be reached by.
Benign traffic must give no critical and at most a handful of warnings, each with a reason.
Used by tests/unit/test_detection_scenarios.py and bench/detection_bench.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from collectors.events import EventBuilder, ParseStats
from core.engine import Engine, EngineConfig
from core.findings import Finding, Severity
from core.settings import ExpectedPrincipal
from core.tables import TableName, WatchedTables
from tablewatch.replay import feed
from tests.scenario import Attack, Manifest

SECOND_US = 1_000_000

REQUIRED: dict[str, tuple[Severity, int | None]] = {
    "whole_table_select": (Severity.CRITICAL, 60 * SECOND_US),
    "stolen_credentials_paging": (Severity.CRITICAL, None),  # before half the table: half_us
    "sequential_enumeration": (Severity.WARNING, 30 * 60 * SECOND_US),
    "unusual_hour_slice": (Severity.WARNING, 5 * 60 * SECOND_US),
    "audit_tamper": (Severity.CRITICAL, 0),
    "new_principal_batches": (Severity.WARNING, 10 * 60 * SECOND_US),
}
"""Attack -> (the severity it must reach, how long after its first record it may take)."""

MAX_BENIGN_WARNINGS = 5


@dataclass
class Verdict:
    attack: Attack
    severity: Severity
    deadline_us: int
    finding: Finding | None
    """The first finding for the attack's principal at or above the severity, from its start."""

    @property
    def ok(self) -> bool:
        return self.finding is not None and self.finding.time_us <= self.deadline_us

    @property
    def latency_s(self) -> float | None:
        if self.finding is None:
            return None
        return (self.finding.time_us - self.attack.start_us) / SECOND_US

    def line(self) -> str:
        got = (
            f"{self.finding.severity.label} after {self.latency_s:.0f}s"
            if self.finding is not None
            else "nothing"
        )
        allowed = (self.deadline_us - self.attack.start_us) / SECOND_US
        return (
            f"{'ok  ' if self.ok else 'MISS'} {self.attack.name:<26} needs {self.severity.label} "
            f"within {allowed:.0f}s: {got}"
        )


@dataclass
class Report:
    manifest: Manifest
    findings: list[Finding]
    verdicts: list[Verdict]
    benign: list[Finding] = field(default_factory=list)
    """Findings about benign traffic (any principal before it attacked, or never attacking)."""
    events: int = 0
    malformed: int = 0

    @property
    def benign_critical(self) -> list[Finding]:
        return [f for f in self.benign if f.severity is Severity.CRITICAL]

    @property
    def benign_warnings(self) -> list[Finding]:
        return [f for f in self.benign if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return (
            all(v.ok for v in self.verdicts)
            and not self.benign_critical
            and len(self.benign_warnings) <= MAX_BENIGN_WARNINGS
            and all(f.reasons for f in self.benign)
        )

    def text(self) -> str:
        m = self.manifest
        head = (
            f"seed {m.seed} log_rows={'on' if m.log_rows else 'off'}: {self.events:,} events, "
            f"table {m.table_rows:,} rows, {len(self.findings)} findings, benign: "
            f"{len(self.benign_critical)} critical, {len(self.benign_warnings)} warnings"
        )
        lines = [head] + ["  " + v.line() for v in self.verdicts]
        for f in self.benign:
            if f.severity >= Severity.WARNING:
                p = f.principal
                lines.append(
                    f"  benign {f.severity.label}: {p.user}@{p.client_addr} {p.application_name!r}"
                    f": {f.reasons[0].detail}"
                )
        return "\n".join(lines)


def config_for(manifest: Manifest, *, table_rows: bool = True) -> EngineConfig:
    """The engine configuration an operator of this world would write."""
    return EngineConfig(
        tables=(TableName.parse(manifest.table, manifest.table_rows if table_rows else None),),
        expected=tuple(ExpectedPrincipal(**e) for e in manifest.expected),
    )


def replay(path: Path, config: EngineConfig) -> tuple[list[Finding], int, int]:
    """Findings of the scenario's log, in time order, with the counts of events and bad records."""
    stats = ParseStats()
    builder = EventBuilder(WatchedTables(config.tables), stats, control=True)
    engine = Engine(config)
    found = feed(engine, path, "csvlog", builder, "")
    found.sort(key=lambda f: f.time_us)
    return found, engine.events, stats.malformed


def _who(f: Finding) -> tuple[str, str, str]:
    p = f.principal
    return (p.user, p.client_addr, p.application_name)


def evaluate(manifest: Manifest, findings: Iterable[Finding], events: int = 0) -> Report:
    """Grade findings against the manifest."""
    findings = list(findings)
    starts: dict[tuple[str, str, str], int] = {}
    verdicts: list[Verdict] = []
    for attack in manifest.attacks:
        who = (
            attack.principal.user,
            attack.principal.client_addr,
            attack.principal.application_name,
        )
        starts[who] = min(starts.get(who, attack.start_us), attack.start_us)
        severity, allowed = REQUIRED[attack.name]
        if allowed is None:
            assert attack.half_us is not None
            deadline = attack.half_us - 1
        else:
            deadline = attack.start_us + allowed
        first = next(
            (
                f
                for f in findings
                if _who(f) == who and f.time_us >= attack.start_us and f.severity >= severity
            ),
            None,
        )
        verdicts.append(Verdict(attack, severity, deadline, first))
    benign = [f for f in findings if f.time_us < starts.get(_who(f), 1 << 62)]
    return Report(manifest, findings, verdicts, benign, events)


def run_scenario(path: Path, *, table_rows: bool = True) -> Report:
    """Replay a generated scenario (its manifest beside it) and grade it."""
    manifest = Manifest.from_json(path.with_suffix(".json").read_text())
    findings, events, malformed = replay(path, config_for(manifest, table_rows=table_rows))
    report = evaluate(manifest, findings, events)
    report.malformed = malformed
    return report
