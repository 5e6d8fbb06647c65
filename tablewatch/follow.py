"""`tablewatch tail`: follow the audit log of the settings live, printing access events.

The events are printed as `replay --events` prints them. The position is saved in the state dir
after each batch, so the next run resumes where this one stopped (a batch printed just before a
crash may be printed again: the printing and the saving are two writes).
"""

from __future__ import annotations

import asyncio
import signal
from typing import BinaryIO, TextIO

from collectors.checkpoint import CheckpointError, CheckpointStore
from collectors.events import EventBuilder
from collectors.tail import LogTail
from core.safetext import safe
from core.settings import Settings
from core.tables import TableName, WatchedTables
from tablewatch.events_out import EventWriter

CHECKPOINT = "audit_log.checkpoint.json"


async def follow(
    settings: Settings, tables: list[TableName], out: BinaryIO, err: TextIO, *, from_start: bool
) -> int:
    """Follow until cancelled; returns the exit status."""
    store = CheckpointStore(settings.state.path() / CHECKPOINT)
    start = "beginning" if from_start else settings.audit_log.start
    try:
        saved = store.load()
    except CheckpointError as exc:
        print(f"tablewatch tail: {exc}; starting at the {start} of the log", file=err)
        saved = None
    log = settings.audit_log
    tail = LogTail(
        log.path,
        EventBuilder(WatchedTables(tables)),
        fmt=log.format,
        log_line_prefix=log.log_line_prefix,
        start=start,
        checkpoint=saved[0] if saved is not None else None,
        poll_interval=log.poll_interval.total_seconds(),
    )
    where = "resuming from the checkpoint" if saved else f"starting at the {start}"
    print(f"tablewatch tail: following {log.path} ({where}); Ctrl-C to stop", file=err)
    writer = EventWriter(out)
    told = 0
    async for batch in tail.batches():
        writer.write(batch.events)
        out.flush()
        store.save(batch.checkpoint)
        notes = tail.notes()
        for note in notes[told:]:
            print(f"tablewatch tail: {safe(note, 300)}", file=err)
        told = len(notes)
    return 0


def run_follow(
    settings: Settings, tables: list[TableName], out: BinaryIO, err: TextIO, *, from_start: bool
) -> int:
    """Run `follow` until SIGINT or SIGTERM; exit status 0 on either."""

    async def main() -> int:
        task = asyncio.ensure_future(follow(settings, tables, out, err, from_start=from_start))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return 0

    return asyncio.run(main())
