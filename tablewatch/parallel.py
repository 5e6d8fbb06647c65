"""Replaying a large csvlog on every core.

The file is cut into blocks of whole records (by quote parity, like `csv_boundary`); worker
processes parse a block each and return its JSON lines, which are written in file order. A block
that does not look like clean csvlog (a damaged record) stops the parallel pass: from that block
on the file is read by the careful sequential path, which resynchronises after damage.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

from collectors.events import EventBuilder, ParseStats
from collectors.logfile import CHUNK, LogFileError, is_gzip, open_log, read_block
from collectors.logformats import CsvLog, csv_boundary
from core.tables import TableName, WatchedTables
from tablewatch.events_out import EventWriter

BLOCK = 1 << 20
MIN_SIZE = 32 << 20
"""Files smaller than this are not worth starting processes for."""

_parser: CsvLog | None = None


def workers() -> int:
    """How many worker processes a parallel replay would use (0: do not bother)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores if cores and cores > 1 else 0


def worth_it(path: Path, fmt: str) -> bool:
    """Whether to replay `path` in parallel."""
    try:
        return fmt == "csvlog" and workers() > 0 and path.stat().st_size >= MIN_SIZE
    except OSError:
        return False


def _init(tables: list[TableName]) -> None:
    global _parser
    _parser = CsvLog(EventBuilder(WatchedTables(tables)))


@dataclass
class _Done:
    lines: bytes
    stats: ParseStats


def _work(job: bytes | tuple[str, int, int]) -> _Done | None:
    """The JSON lines of a block of whole csvlog records; None if it is not clean csvlog.

    The block comes as bytes (from a gzip stream), or as (path, offset, length) of a plain file,
    which the worker reads itself: cheaper than pushing the bytes through a pipe.
    """
    if isinstance(job, tuple):
        path, offset, length = job
        fd = os.open(path, os.O_RDONLY)
        try:
            block = os.pread(fd, length, offset)
        finally:
            os.close(fd)
    else:
        block = job
    parser = _parser
    assert parser is not None
    stats = ParseStats()
    parser.builder.stats = parser.stats = stats
    out = io.BytesIO()
    writer = EventWriter(out)
    pos, n = 0, len(block)
    while pos < n:
        end = pos + CHUNK
        if end < n:
            # cut at a record boundary; a record longer than a chunk takes the rest of the block
            cut = csv_boundary(block[pos:end])
            end = pos + cut if cut else n
        else:
            end = n
        events = parser.parse_text(block[pos:end].decode("utf-8", "replace"))
        if events is None:
            return None
        writer.write(events)
        pos = end
    return _Done(out.getvalue(), stats)


def _blocks(stream: BinaryIO, path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, block of whole records) from the start of the file."""
    offset, pending = 0, b""
    while True:
        data = read_block(stream, max(BLOCK, len(pending)), path)
        if not data:
            if pending:
                yield offset, pending
            return
        buf = pending + data if pending else data
        end = csv_boundary(buf)
        if end:
            yield offset, buf[:end]
            offset += end
        pending = buf[end:]


def replay_parallel(
    path: Path, tables: list[TableName], out: BinaryIO, stats: ParseStats
) -> int | None:
    """Write the events of `path` to `out` using every core.

    Returns None when the whole file was done, or the offset of the first block that was not
    clean csvlog: everything before it has been written, the caller reads on from there.

    Raises:
        LogFileError: the file cannot be read to its end.
    """
    count = workers()
    context = get_context("fork")
    plain = not is_gzip(path)
    with (
        open_log(path) as stream,
        ProcessPoolExecutor(count, context, initializer=_init, initargs=(tables,)) as pool,
    ):
        queue: deque[tuple[int, Future[_Done | None]]] = deque()

        def drain_one() -> int | None:
            offset, future = queue.popleft()
            done = future.result()
            if done is None:
                return offset
            out.write(done.lines)
            _merge(stats, done.stats)
            return None

        for offset, block in _blocks(stream, path):
            job = (str(path), offset, len(block)) if plain else block
            queue.append((offset, pool.submit(_work, job)))
            if len(queue) >= 2 * count:
                damaged = drain_one()
                if damaged is not None:
                    _cancel(queue)
                    return damaged
        while queue:
            damaged = drain_one()
            if damaged is not None:
                _cancel(queue)
                return damaged
    return None


def _cancel(queue: deque[tuple[int, Future[_Done | None]]]) -> None:
    for _, future in queue:
        future.cancel()
    queue.clear()


def _merge(total: ParseStats, part: ParseStats) -> None:
    total.records += part.records
    total.events += part.events
    total.malformed += part.malformed
    total.forged += part.forged
    total.samples.extend(part.samples[: max(0, 5 - len(total.samples))])


__all__ = ["LogFileError", "replay_parallel", "worth_it"]
