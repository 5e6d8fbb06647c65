"""A real Prometheus (Debian `prometheus`) scrapes a running agent fed by a real pgaudit log and
evaluates the shipped alerting rules; `promtool` checks and unit-tests the rule file."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.agentkit import (
    ROOT,
    SAMPLE_EVENTS,
    configure,
    free_port,
    fresh_sample,
    next_log,
    start,
)

DEPLOY = ROOT / "deploy" / "prometheus"
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")


def require(binary: Path) -> None:
    """Skip without the binary, except under CI, where that is a failure."""
    if os.access(binary, os.X_OK):
        return
    reason = f"{binary} not found: apt-get install prometheus (scripts/bootstrap.sh does)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def test_the_rule_file_is_valid_and_its_unit_tests_pass() -> None:
    require(PROMTOOL)
    checked = subprocess.run(
        [str(PROMTOOL), "check", "rules", "rules.yml"], cwd=DEPLOY, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = subprocess.run(
        [str(PROMTOOL), "test", "rules", "rules_test.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


async def _prometheus(tmp_path: Path, target_port: int) -> AsyncIterator[str]:
    port = free_port()
    shutil.copy(DEPLOY / "rules.yml", tmp_path / "rules.yml")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files: [rules.yml]\n"
        "scrape_configs:\n  - job_name: tablewatch\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    proc = await asyncio.create_subprocess_exec(
        str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{url}/-/ready") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _query(url: str, expr: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/v1/query", params={"query": expr}) as answer:
            body = await answer.json()
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


async def _until(url: str, expr: str, seconds: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await _query(url, expr)
        if result:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"{expr}: nothing within {seconds:g}s")


async def test_prometheus_scrapes_the_agent_and_the_critical_reader_alert_fires(
    tmp_path: Path,
) -> None:
    require(PROMETHEUS)
    port = free_port()
    config = configure(tmp_path, port)
    (tmp_path / "log" / "postgresql-1.csv").write_bytes(fresh_sample())
    agent = await start(config)
    try:
        await next_log(agent, "started")
        prom = _prometheus(tmp_path / "prom", port)
        (tmp_path / "prom").mkdir()
        url = await prom.__anext__()
        try:
            events = await _until(
                url, f'tablewatch_events_total{{job="tablewatch"}} == {SAMPLE_EVENTS}'
            )
            assert events[0]["metric"]["instance"] == f"127.0.0.1:{port}"
            (critical,) = await _until(
                url, 'tablewatch_readers{severity="critical", table="crm.client_list"} > 0'
            )
            assert float(critical["value"][1]) >= 1
            up = await _query(url, 'tablewatch_source_up{source="audit_log"}')
            assert float(up[0]["value"][1]) == 1
            firing = await _until(
                url, 'ALERTS{alertname="TablewatchCriticalReader", alertstate="firing"}'
            )
            assert firing[0]["metric"]["table"] == "crm.client_list"
            series = await _query(url, 'count({__name__=~"tablewatch_.*"})')
            assert 20 < float(series[0]["value"][1]) < 200  # bounded, whatever the traffic
        finally:
            await prom.aclose()
    finally:
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.wait(), 30) == 0
