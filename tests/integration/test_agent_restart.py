"""`tablewatch run` under load, killed (SIGKILL) and stopped (SIGTERM) while the server writes
on: restarted on the same state dir each time, it loses no audit record, counts none twice (its
counters continue from the checkpoint) and loses no alert (delivered exactly once)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from core.engine import Engine, EngineConfig
from core.tables import TableName
from tests.agentkit import (
    configure,
    events_become,
    free_port,
    live_record,
    next_log,
    running,
    scrape,
)

RATE = 3_000
"""Records per second the writer appends..."""
CHUNK_SECONDS = 0.05
"""...in one write every this often."""
WRITE_AT_MOST = 25.0
"""The writer stops by itself after this long, whatever happens to the test."""
INTRUDER = {"user": "mallory", "application": "psql", "client": "203.0.113.9"}


class Writer:
    """The server's logging collector at load: key lookups by four application principals,
    and, once asked, one whole-table read by a principal never seen (a critical finding)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self.intrude = asyncio.Event()
        self.intruded = asyncio.Event()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        rnd = random.Random(6)
        per_chunk = int(RATE * CHUNK_SECONDS)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        deadline = time.monotonic() + WRITE_AT_MOST
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                now = datetime.now(UTC)
                chunk = [
                    live_record(
                        self.written + i + 1,
                        now,
                        application=f"billing-api-{i % 4}",
                        session=f"6b0b9ed0.{i % 4}",
                        parameters=str(rnd.randrange(1, 1_000_000)),  # not an enumeration
                    )
                    for i in range(per_chunk)
                ]
                if self.intrude.is_set() and not self.intruded.is_set():
                    chunk.append(
                        live_record(
                            1,
                            now,
                            session="6b0b9ed0.bad",
                            parameters="<none>",
                            statement="SELECT * FROM crm.client_list",
                            rows=50_000,
                            **INTRUDER,
                        )  # fmt: skip
                    )
                    self.intruded.set()
                os.write(fd, b"".join(chunk))
                self.written += len(chunk)
                await asyncio.sleep(CHUNK_SECONDS)
        finally:
            os.close(fd)


async def test_kills_and_stops_under_load_lose_nothing_and_count_nothing_twice(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = configure(tmp_path, port)
    writer = Writer(tmp_path / "log" / "postgresql-1.csv")
    writing = asyncio.create_task(writer.run())
    try:
        async with running(config) as first:  # killed at some moment of the load
            await next_log(first, "started")
            await asyncio.sleep(1.5)
            first.kill()
            await first.wait()
        assert writer.written > 0 and not writing.done()
        saved = json.loads((tmp_path / "state" / "audit_log.checkpoint.json").read_bytes())
        resumed = saved["consumer"]["events"]  # counted with the position, in one write
        assert 0 < resumed <= writer.written

        async with running(config) as second:  # killed right after its alert opened
            await next_log(second, "started")
            writer.intrude.set()
            alert = await next_log(second, "alert_active")
            second.kill()
            await second.wait()
        assert alert["user"] == "mallory" and alert["severity"] == "critical"
        assert not writing.done()

        async with running(config) as third:  # stopped cleanly while the load goes on
            await next_log(third, "started")
            await asyncio.sleep(1.5)
            third.send_signal(signal.SIGTERM)
            stopped = await next_log(third, "stopped")
            assert await asyncio.wait_for(third.wait(), 30) == 0
        assert stopped["events"] > resumed and not writing.done()

        async with running(config) as last:
            await next_log(last, "started")
            await asyncio.sleep(1.0)
            writer.stop.set()
            await writing
            m = await events_become(port, writer.written)
            await asyncio.sleep(0.5)  # caught up: nothing more comes
            assert (await scrape(port))["tablewatch_events_total{}"] == writer.written
            assert m["tablewatch_events_total{}"] == writer.written
            reads = sum(v for k, v in m.items() if k.startswith("tablewatch_reads_total{"))
            assert reads == writer.written
            last.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(last.wait(), 30) == 0
    finally:
        writer.stop.set()
        await writing

    recorded = (tmp_path / "state" / "alerts.jsonl").read_text().splitlines()
    alerts = [json.loads(line) for line in recorded]
    triggers = [a for a in alerts if a["action"] == "trigger"]
    assert [(a["user"], a["severity"]) for a in triggers] == [("mallory", "critical")]


def test_counters_come_back_and_foreign_ones_are_ignored_field_by_field() -> None:
    tables = (TableName.parse("crm.client_list"), TableName.parse("crm.orders"))
    engine = Engine(EngineConfig(tables))
    saved = {
        "events": 12,
        "tables": {
            "crm.client_list": {"reads": [9, 1, 0, 2], "rows_read": [9, 1, 0, "many"]},
            "crm.orders": {"reads": [1, 2, 3], "rows_read": [-1, 0, 0, 0]},
            "crm.gone": {"reads": [5, 0, 0, 0], "rows_read": [5, 0, 0, 0]},
            "crm.shipments": "garbage",
        },
    }
    engine.restore_counters(saved)
    assert engine.events == 12
    assert engine.read_counts() == {
        "crm.client_list": ([9, 1, 0, 2], [0, 0, 0, 0]),
        "crm.orders": ([0, 0, 0, 0], [0, 0, 0, 0]),
    }
    again = Engine(EngineConfig(tables))
    again.restore_counters(json.loads(json.dumps(engine.counters())))
    assert again.counters() == engine.counters()
    for foreign in ({}, {"events": "12", "tables": []}, {"events": True, "tables": None}):
        fresh = Engine(EngineConfig(tables))
        fresh.restore_counters(foreign)
        assert fresh.events == 0 and fresh.counters()["tables"]["crm.orders"]["reads"] == [0] * 4
