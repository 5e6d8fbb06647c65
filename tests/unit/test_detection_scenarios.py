"""Days of generated pgaudit traffic through the real parser and engine: every attack is caught in
time, benign habits never page (issue 3, "Show it works").

The seeds here are fixed so CI is repeatable; `bench/detection_bench.py` sweeps many more (names,
sizes, rates and timings vary with the seed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.findings import Severity
from tests.detection_check import MAX_BENIGN_WARNINGS, run_scenario
from tests.scenario import generate

SEEDS = [int(s) for s in os.environ.get("TABLEWATCH_SCENARIO_SEEDS", "3,8").split(",")]


@pytest.fixture(scope="module")
def scenario_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scenarios")


@pytest.mark.slow
@pytest.mark.parametrize("log_rows", [False, True], ids=["log_rows_off", "log_rows_on"])
@pytest.mark.parametrize("seed", SEEDS)
def test_every_attack_is_caught_in_time_and_benign_traffic_never_pages(
    scenario_dir: Path, seed: int, log_rows: bool
) -> None:
    path = scenario_dir / f"seed{seed}-{'rows' if log_rows else 'norows'}.csv"
    generate(path, seed=seed, log_rows=log_rows, days=4)
    report = run_scenario(path)
    story = report.text()
    assert report.malformed == 0, story
    assert len(report.verdicts) == 6, story
    for verdict in report.verdicts:
        assert verdict.ok, story
    assert report.benign_critical == [], story
    assert len(report.benign_warnings) <= MAX_BENIGN_WARNINGS, story
    assert all(f.reasons and all(r.detail for r in f.reasons) for f in report.findings), story
    # findings come out in event-time order, each a rise of its principal's severity
    times = [f.time_us for f in report.findings]
    assert times == sorted(times)
    assert all(f.severity > Severity.NONE for f in report.findings)
