#!/usr/bin/env python3
"""Alerts bench: outbox throughput to a local receiver, and finding -> HTTP request latency.

    .venv/bin/python bench/alerts_bench.py [--alerts 2000] [--samples 300] [--rate 1000]

A receiver (`bench/receiver.py`, aiohttp, its own process) takes every POST and notes its
arrival time. Then, in this process:

1. Throughput: `--alerts` operator pages (distinct keys) through the webhook sink (signed JSON):
   the rate of queueing them in the outbox (one SQLite commit each, synchronous = FULL), the rate
   of draining the queue to the receiver, and, side by side, the same POSTs made straight with
   aiohttp (one session, 8 in flight, no outbox): the price of durability.
2. Latency: a `LiveEngine` (engine, alert center: webhook + local sinks, rules paging on
   critical) fed `--rate` events/s of normal key lookups in 100 ms batches; every 100 ms one new
   intruder reads the whole table (a critical finding). Measured from the `feed()` call carrying
   the intruder's record to the receiver's arrival stamp (same host clock). Target: p99 < 200 ms.

Report: stdout and `bench/out/alerts-bench.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

import aiohttp  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from replay_bench import cpu_model  # noqa: E402

from alerts.center import AlertCenter  # noqa: E402
from alerts.delivery import CONCURRENCY  # noqa: E402
from alerts.local import LocalSink  # noqa: E402
from alerts.outbox import OUTBOX_FILE, Outbox  # noqa: E402
from alerts.rules import Rules  # noqa: E402
from alerts.webhook import Webhook  # noqa: E402
from core.engine import Engine, EngineConfig  # noqa: E402
from core.events import AccessEvent, EventKind  # noqa: E402
from core.findings import PrincipalKey, Reason, Severity  # noqa: E402
from core.settings import WebhookSink  # noqa: E402
from core.tables import TableName  # noqa: E402
from tablewatch.live import LiveEngine  # noqa: E402

OUT = HERE / "out"
TABLE = TableName.parse("crm.client_list", 50_000)
BULK = Reason("bulk_read", Severity.CRITICAL, 95, "one statement read 50,000 rows (100%)")


class Receiver:
    """bench/receiver.py in its own process."""

    def __init__(self, folder: Path) -> None:
        port_file = folder / "port"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "receiver.py"), str(port_file)], cwd=ROOT
        )
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"

    async def arrivals(self, session: aiohttp.ClientSession) -> list[tuple[float, str]]:
        async with session.get(f"{self.url}/stats") as answer:
            return [(float(t), str(k)) for t, k in await answer.json()]

    async def forget(self, session: aiohttp.ClientSession) -> None:
        async with session.delete(f"{self.url}/stats"):
            pass

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def webhook(url: str) -> Webhook:
    return Webhook(WebhookSink(url=f"{url}/hook", secret=SecretStr("bench-secret")), host="bench")


def who(i: int) -> PrincipalKey:
    return PrincipalKey(
        f"user{i}", f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "psql", str(TABLE)
    )


async def throughput(receiver: Receiver, folder: Path, n: int) -> dict[str, float]:
    center = AlertCenter(
        Outbox(folder / OUTBOX_FILE), [webhook(receiver.url)], Rules(page_on=None), host="bench"
    )
    started = time.perf_counter()
    for i in range(n):
        center.page(who(i), Severity.CRITICAL, (BULK,), note="", operator="bench")
    queued = time.perf_counter() - started
    started = time.perf_counter()
    task = asyncio.create_task(center.dispatcher.run())
    while True:  # polled: the depth is what is measured, the loop must not touch it
        if not center.outbox.depth():
            break
        await asyncio.sleep(0.005)
    drained = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    payloads = [center.outbox.trigger_payload("webhook", center.views()[-1].key) or b"{}"] * n
    await center.close()
    async with aiohttp.ClientSession() as session:
        got = len(await receiver.arrivals(session))
        await receiver.forget(session)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def post(body: bytes) -> None:
            async with (
                gate,
                session.post(
                    f"{receiver.url}/hook", data=body, headers={"Content-Type": "application/json"}
                ) as answer,
            ):
                await answer.read()

        started = time.perf_counter()
        await asyncio.gather(*(post(p) for p in payloads))
        raw = time.perf_counter() - started
        await receiver.forget(session)
    return {
        "alerts": n,
        "received": got,
        "queue_per_s": n / queued,
        "drain_per_s": n / drained,
        "end_to_end_per_s": n / (queued + drained),
        "raw_http_per_s": n / raw,
    }


def lookup(t: int, i: int) -> AccessEvent:
    return AccessEvent(
        t, EventKind.AUDIT, "app", "crm", f"10.0.0.{i % 8}", "crm-web", f"s{i % 8}", "OBJECT",
        i, 1, "READ", "SELECT", "TABLE", str(TABLE),
        "SELECT * FROM crm.client_list WHERE id = $1", (str(i % 50_000),), 1,
    )  # fmt: skip


def intruder(t: int, i: int) -> AccessEvent:
    p = who(100_000 + i)
    return AccessEvent(
        t, EventKind.AUDIT, p.user, "crm", p.client_addr, p.application_name, f"x{i}", "OBJECT",
        1, 1, "READ", "SELECT", "TABLE", str(TABLE),
        "SELECT * FROM crm.client_list", None, 50_000,
    )  # fmt: skip


async def latency(receiver: Receiver, folder: Path, samples: int, rate: int) -> list[float]:
    engine = Engine(EngineConfig(tables=(TABLE,), learning_period_us=0))
    rules = Rules(flood_total=1_000_000, flood_per_principal=1_000)
    center = AlertCenter(
        Outbox(folder / "latency" / OUTBOX_FILE),
        [webhook(receiver.url), LocalSink(folder / "alerts.jsonl")],
        rules,
        host="bench",
    )
    live = LiveEngine(engine, center)
    delivery = asyncio.create_task(center.run(engine.reported))
    sent: dict[str, float] = {}
    seq = 0
    try:
        for i in range(samples):
            now = time.time_ns() // 1000
            batch = [
                lookup(now - 100_000 + j * 100_000 // rate * 10, seq + j) for j in range(rate // 10)
            ]
            seq += len(batch)
            live.feed(batch)
            event = intruder(now, i)
            t0 = time.time()
            live.feed([event])
            key = center.views()[-1].key
            sent[key] = t0
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
    finally:
        delivery.cancel()
        await asyncio.gather(delivery, return_exceptions=True)
        await center.close()
    async with aiohttp.ClientSession() as session:
        arrivals = await receiver.arrivals(session)
    return sorted((at - sent[key]) * 1000 for at, key in arrivals if key in sent)


def row(what: str, value: float) -> str:
    return f"| {what} | {value:,.0f} |"


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def bench(args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as tmp:
        folder = Path(tmp)
        receiver = Receiver(folder)
        try:
            tp = await throughput(receiver, folder, args.alerts)
            lat = await latency(receiver, folder, args.samples, args.rate)
        finally:
            receiver.stop()
    lines = [
        f"# Alerts bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} CPU ({cpu_model()}), Python {platform.python_version()}, "
        f"aiohttp {version('aiohttp')}, SQLite {__import__('sqlite3').sqlite_version}",
        f"Command: .venv/bin/python bench/alerts_bench.py --alerts {args.alerts} "
        f"--samples {args.samples} --rate {args.rate}",
        "",
        "## Outbox throughput (webhook sink, signed JSON, local receiver in its own process)",
        "",
        "| what | alerts/s |",
        "|---|---:|",
        row("queue in the outbox (page -> SQLite commit, synchronous=FULL)", tp["queue_per_s"]),
        row(f"drain the outbox to the receiver ({CONCURRENCY} in flight)", tp["drain_per_s"]),
        row("end to end (queue + drain)", tp["end_to_end_per_s"]),
        row("peer: the same POSTs straight from aiohttp, no outbox", tp["raw_http_per_s"]),
        "",
        f"{tp['alerts']:,} alerts queued, {tp['received']:,} received.",
        "",
        f"## Critical finding -> HTTP request ({len(lat)} of {args.samples} samples, "
        f"{args.rate:,} events/s of normal traffic)",
        "",
        "| p50 | p95 | p99 | max | target p99 |",
        "|---:|---:|---:|---:|---:|",
        f"| {pct(lat, 50):.1f} ms | {pct(lat, 95):.1f} ms | {pct(lat, 99):.1f} ms | "
        f"{lat[-1]:.1f} ms | 200 ms |",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    lines = asyncio.run(bench(args))
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "alerts-bench.md").write_text(text)


if __name__ == "__main__":
    main()
