"""A consumer of `LogTail` run as a separate process by the rotation tests (and killed by them).

It appends each event's statement_id to OUT, one per line, then saves the tail's checkpoint
together with OUT's length in one atomic write. On start it cuts OUT back to the saved length:
what a consumer with its own durable state does to get exactly-once across kill -9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from collectors.checkpoint import CheckpointError, CheckpointStore
from collectors.events import EventBuilder
from collectors.tail import LogTail
from core.tables import TableName, WatchedTables


async def consume(args: argparse.Namespace) -> None:
    store = CheckpointStore(Path(args.state))
    try:
        saved = store.load()
    except CheckpointError as exc:
        print(f"tail_driver: {exc}; starting at {args.start}", file=sys.stderr, flush=True)
        saved = None
    source, consumer = saved if saved is not None else (None, {})
    out_len = int(consumer.get("out_len", 0))
    if os.environ.get("TAIL_DRIVER_DEBUG"):
        print(
            f"start out_len={out_len} source={json.dumps(source)}",
            file=sys.stderr,
            flush=True,
        )
    out = os.open(args.out, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(out, out_len)
    os.lseek(out, out_len, os.SEEK_SET)
    builder = EventBuilder(WatchedTables([TableName.parse("crm.client_list")]))
    tail = LogTail(
        args.pattern,
        builder,
        fmt=args.format,
        start=args.start,
        checkpoint=source,
        poll_interval=0.02,
        idle_flush=0.2,
        chunk=args.chunk,
    )
    stats_path = Path(args.out + ".stats")
    debug = bool(os.environ.get("TAIL_DRIVER_DEBUG"))
    async for batch in tail.batches():
        if debug and batch.events:
            first, last = batch.events[0].statement_id, batch.events[-1].statement_id
            where = {(f["dev"], f["ino"]): f["offset"] for f in batch.checkpoint["files"]}
            cur = batch.checkpoint["current"]
            print(
                f"batch {first}..{last} at {cur} offset {where.get(tuple(cur or ()))} "
                f"notes {tail.notes()}",
                file=sys.stderr,
            )
        if batch.events:
            data = "".join(f"{e.statement_id}\n" for e in batch.events).encode()
            os.write(out, data)
            out_len += len(data)
            os.fsync(out)
        store.save(batch.checkpoint, {"out_len": out_len})
        _write_stats(stats_path, tail)


def _write_stats(path: Path, tail: LogTail) -> None:
    health = tail.health()
    stats = {
        "lost_bytes": health.lost_bytes,
        "malformed": health.malformed,
        "rotations": health.rotations,
        "notes": list(health.notes),
    }
    path.write_text(json.dumps(stats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pattern", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--format", default="auto")
    parser.add_argument("--start", default="beginning")
    parser.add_argument("--chunk", type=int, default=1 << 16)
    args = parser.parse_args()
    if os.environ.get("TAIL_DRIVER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
    loop = asyncio.new_event_loop()
    task = loop.create_task(consume(args))
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()


if __name__ == "__main__":
    main()
