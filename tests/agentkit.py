"""Running the agent (`tablewatch run`) as a subprocess on a real pgaudit csvlog, for the tests:
its settings, its JSON log lines, its /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tablewatch.pgcluster import free_port

__all__ = ["free_port"]  # the tests' one free-port helper, re-exported for them

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tablewatch" / "samples" / "pgaudit-sample.csv"
SAMPLE_EVENTS = 170
"""Records of the sample the engine takes: the 169 about crm.client_list that `tablewatch
replay --events` prints, and one about the audit set-up (watched for tampering)."""


def configure(tmp_path: Path, port: int, more: str = "", api: str = "", token: str = "") -> Path:
    """The agent's settings in `tmp_path` (log, state), /metrics on `port`, the API on `api`
    (host:port; "" : off) with `token`, and `more` TOML."""
    (tmp_path / "log").mkdir(exist_ok=True)
    config = tmp_path / "settings.toml"
    config.write_text(
        '[[tables]]\nname = "crm.client_list"\n'
        f'[audit_log]\npath = "{tmp_path}/log/*.csv"\nformat = "csvlog"\nstart = "beginning"\n'
        'poll_interval = "100ms"\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        f'[api]\nlisten = "{api}"\n'
        + (f'token = "{token}"\n' if token else "")
        + f'[state]\ndir = "{tmp_path}/state"\n'
        + more
    )
    return config


async def start(config: Path) -> asyncio.subprocess.Process:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tablewatch.cli", "--config", str(config), "run",
        "--log-format", "json",
        cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT)}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@asynccontextmanager
async def running(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """The agent started on `config`, killed on the way out if a test left it running."""
    agent = await start(config)
    try:
        yield agent
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()


async def next_log(proc: asyncio.subprocess.Process, event: str) -> dict[str, Any]:
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line, f"the agent ended before logging {event}"
        record = json.loads(line)
        if record["event"] == event:
            return record  # type: ignore[no-any-return]


async def scrape(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
            text = await answer.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


async def events_become(port: int, n: int) -> dict[str, float]:
    for _ in range(300):
        m = await scrape(port)
        if m["tablewatch_events_total{}"] >= n:
            return m
        await asyncio.sleep(0.1)
    raise AssertionError(f"events stayed at {m['tablewatch_events_total{}']}, expected {n}")


_STAMP = re.compile(rb"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\.\d{3})? UTC")


def fresh_sample() -> bytes:
    """The sample log with its times moved so that its last record is now: what a live server
    writes (the engine judges by event time, and a reader's severity falls back an hour after)."""
    raw = SAMPLE.read_bytes()
    stamps = [
        datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S") for m in _STAMP.finditer(raw)
    ]
    shift = datetime.now(UTC).replace(tzinfo=None) - max(stamps)

    def moved(m: re.Match[bytes]) -> bytes:
        when = datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S") + shift
        return when.strftime("%Y-%m-%d %H:%M:%S").encode() + (m.group(2) or b"") + b" UTC"

    return _STAMP.sub(moved, raw)


def live_record(
    n: int,
    when: datetime,
    *,
    user: str = "app",
    application: str = "billing-api",
    client: str = "10.0.0.5",
    session: str = "6b0b9ed0.1e32",
    statement: str = "SELECT * FROM crm.client_list WHERE id = $1",
    parameters: str | None = None,
    rows: int = 1,
) -> bytes:
    """One csvlog pgaudit record about crm.client_list (rows logged) stamped `when`, as a live
    server writes it: statement_id `n` in `session`, parameter `n` unless `parameters` says."""
    params = str(n) if parameters is None else parameters
    inner = f'AUDIT: OBJECT,{n},1,READ,SELECT,TABLE,crm.client_list,"{statement}",{params},{rows}'
    message = inner.replace('"', '""')
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"
    return (
        f'{stamp},"{user}","crm",7730,"{client}:53552",{session},{n},"SELECT",'
        f'{stamp[:19]} UTC,3/14,0,LOG,00000,"{message}",,,,,,,,,"{application}",'
        '"client backend",,0\n'
    ).encode()
