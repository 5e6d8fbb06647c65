"""Replaying a large csvlog on every core.

The file is cut into blocks of whole records (by quote parity, like `csv_boundary`); worker
processes parse a block each and return either its JSON lines (`replay --events`, written in file
order) or its events packed with msgpack (findings: the engine runs in the main process, on the
blocks in file order, while the workers parse the next ones). A block that does not look like
clean csvlog (a damaged record) stops the parallel pass: from that block on the file is read by
the careful sequential path, which resynchronises after damage.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

import msgspec

from collectors.events import EventBuilder, ParseStats
from collectors.logfile import CHUNK, LogFileError, is_gzip, open_log, read_block
from collectors.logformats import CsvLog, csv_boundary
from core.events import AccessEvent
from core.tables import TableName, WatchedTables
from tablewatch.events_out import EventWriter

BLOCK = 1 << 20
_AHEAD = 2
"""Blocks in flight per worker (8 measured no faster)."""
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


def _init(tables: list[TableName], control: bool) -> None:
    global _parser
    _parser = CsvLog(EventBuilder(WatchedTables(tables), control=control))


@dataclass
class _Done:
    data: bytes
    """JSON lines, or msgpack of the events."""
    stats: ParseStats


_EVENTS = msgspec.msgpack.Decoder(list[AccessEvent])


def _work_lines(job: bytes | tuple[str, int, int]) -> _Done | None:
    """The JSON lines of a block of whole csvlog records; None if it is not clean csvlog."""
    return _work(job, lines=True)


def _work_events(job: bytes | tuple[str, int, int]) -> _Done | None:
    """The events of a block, packed; None if it is not clean csvlog."""
    return _work(job, lines=False)


def _work(job: bytes | tuple[str, int, int], *, lines: bool) -> _Done | None:
    """Parse a block of whole csvlog records.

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
    found: list[AccessEvent] = []
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
        if lines:
            writer.write(events)
        else:
            found.extend(events)
        pos = end
    return _Done(out.getvalue() if lines else msgspec.msgpack.encode(found), stats)


def _plain_blocks(path: Path) -> Iterator[tuple[int, int]]:
    """(offset, length) of blocks of whole records of a plain file, read with pread: no copies
    beyond the read itself (the workers read the blocks again, themselves)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise LogFileError(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        offset, size = 0, BLOCK
        while True:
            try:
                data = os.pread(fd, size, offset)
            except OSError as exc:
                raise LogFileError(f"{path}: read error: {exc.strerror or exc}") from None
            if len(data) < size:  # the end of the file: the rest, complete or not
                if data:
                    yield offset, len(data)
                return
            end = csv_boundary(data)
            if not end:  # a record longer than the block
                size *= 2
                continue
            yield offset, end
            offset, size = offset + end, BLOCK
    finally:
        os.close(fd)


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
    """Write the events of `path` to `out` as JSON lines, using every core.

    Returns None when the whole file was done, or the offset of the first block that was not
    clean csvlog: everything before it has been written, the caller reads on from there.

    Raises:
        LogFileError: the file cannot be read to its end.
    """

    def write(done: _Done) -> None:
        out.write(done.data)

    return _run(path, tables, stats, _work_lines, write, control=False)


def events_parallel(
    path: Path,
    tables: list[TableName],
    stats: ParseStats,
    consume: Callable[[list[AccessEvent]], None],
) -> int | None:
    """Hand the events of `path` (with control records) to `consume` in file order, parsing on
    every core. Returns as `replay_parallel` does.

    Raises:
        LogFileError: the file cannot be read to its end.
    """

    def unpack(done: _Done) -> None:
        consume(_EVENTS.decode(done.data))

    return _run(path, tables, stats, _work_events, unpack, control=True)


def _run(
    path: Path,
    tables: list[TableName],
    stats: ParseStats,
    work: Callable[[bytes | tuple[str, int, int]], _Done | None],
    deliver: Callable[[_Done], None],
    *,
    control: bool,
) -> int | None:
    count = workers()
    context = get_context("fork")
    plain = not is_gzip(path)
    with ProcessPoolExecutor(count, context, initializer=_init, initargs=(tables, control)) as pool:
        queue: deque[tuple[int, Future[_Done | None]]] = deque()

        def drain_one() -> int | None:
            offset, future = queue.popleft()
            done = future.result()
            if done is None:
                return offset
            _merge(stats, done.stats)
            deliver(done)
            return None

        jobs: Iterator[tuple[int, bytes | tuple[str, int, int]]] = (
            ((offset, (str(path), offset, length)) for offset, length in _plain_blocks(path))
            if plain
            else _gzip_blocks(path)
        )
        for offset, job in jobs:
            queue.append((offset, pool.submit(work, job)))
            if len(queue) >= _AHEAD * count:
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


def _gzip_blocks(path: Path) -> Iterator[tuple[int, bytes | tuple[str, int, int]]]:
    with open_log(path) as stream:
        yield from _blocks(stream, path)


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


__all__ = ["LogFileError", "events_parallel", "replay_parallel", "worth_it"]
