"""`LogTail` in small stories: where a first run starts, partial lines, restarts from a checkpoint,
rotation (rename, copytruncate, a name reused) live and while the tail is down, look-alike files,
files that are not logs, and the checkpoint file.

The tail runs in a background task (`Run`) that records every batch; the test writes to the log
between awaits and polls for what it expects with a deadline. Synchronous writes between two
awaits happen while the tail cannot look, which is how a story says "while the tail was asleep".
(The stress test with kills and thousands of records is tests/integration/test_tail_rotation.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import time
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import pytest

from collectors.checkpoint import CheckpointError, CheckpointStore
from collectors.events import EventBuilder
from collectors.tail import LogTail
from core.events import AccessEvent
from core.sources import EventBatch
from core.tables import TableName, WatchedTables
from tests.logwriter import BASE_TIME, NOISE, csv_record

POLL = 0.01
IDLE = 0.03
QUIET = 0.05
"""How long nothing must happen before a story concludes that nothing more will."""
DEADLINE = 3.0


# ----------------------------------------------------------------------------------- records


def _stamp(n: int) -> str:
    when = BASE_TIME + timedelta(milliseconds=n)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"


def _message(n: int) -> str:
    return f"AUDIT: OBJECT,{n},1,READ,SELECT,TABLE,crm.client_list,select 1,<none>"


def json_record(n: int) -> bytes:
    """A PostgreSQL 15 jsonlog pgaudit record with statement_id `n` (compact, as the server)."""
    record = {
        "timestamp": _stamp(n),
        "user": "app",
        "dbname": "crm",
        "pid": 7730,
        "remote_host": "10.0.0.5",
        "remote_port": 53552,
        "session_id": "6b0b9ed0.1e32",
        "line_num": n,
        "ps": "SELECT",
        "session_start": "2026-11-29 03:41:04 UTC",
        "vxid": "3/14",
        "txid": 0,
        "error_severity": "LOG",
        "message": _message(n),
        "application_name": "psql",
        "backend_type": "client backend",
        "query_id": 0,
    }
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def stderr_record(n: int) -> bytes:
    """A stderr pgaudit record with statement_id `n`, under the default log_line_prefix."""
    return f"{_stamp(n)} [7730] app@crm 10.0.0.5(53552) psql LOG:  {_message(n)}\n".encode()


RECORDS: dict[str, Callable[[int], bytes]] = {
    "csvlog": csv_record,
    "jsonlog": json_record,
    "stderr": stderr_record,
}


def records(ids: range | list[int], fmt: str = "csvlog") -> bytes:
    return b"".join(RECORDS[fmt](n) for n in ids)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


# ------------------------------------------------------------------------------------ driving


def make_tail(pattern: Path | str, **kwargs: Any) -> LogTail:
    builder = EventBuilder(WatchedTables([TableName.parse("crm.client_list")]))
    kwargs.setdefault("poll_interval", POLL)
    kwargs.setdefault("idle_flush", IDLE)
    return LogTail(str(pattern), builder, **kwargs)


class Run:
    """A consumer of `tail.batches()` in a background task: the events and the checkpoint of
    every batch it took, in order. Leaving the `async with` cancels the task and closes the
    generator (and with it the tail's file descriptor)."""

    def __init__(self, tail: LogTail, *, max_batches: int | None = None) -> None:
        self.tail = tail
        self.max_batches = max_batches
        self.events: list[AccessEvent] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.states: set[str] = set()
        """Every `health().state` seen: after each batch and at each poll of `until`/`settle`."""
        # typed as AsyncIterator (the EventSource protocol); it is a generator, closed by aclose()
        self._agen = cast(AsyncGenerator[EventBatch, None], tail.batches())
        self._task: asyncio.Task[None] | None = None

    @property
    def ids(self) -> list[int | None]:
        return [e.statement_id for e in self.events]

    @property
    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint of the last batch taken (what a consumer would have persisted)."""
        assert self.checkpoints, "no batch yet"
        return self.checkpoints[-1]

    async def _consume(self) -> None:
        async for batch in self._agen:
            self.events.extend(batch.events)
            self.checkpoints.append(batch.checkpoint)
            self.states.add(self.tail.health().state)
            if self.max_batches is not None and len(self.checkpoints) >= self.max_batches:
                return

    async def __aenter__(self) -> Run:
        self._task = asyncio.create_task(self._consume())
        # The generator sets up its start position synchronously on its first step, before its
        # first await: once the task has run a little, a write lands after that position.
        for _ in range(3):
            await asyncio.sleep(0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._agen.aclose()

    def _check_alive(self) -> None:
        assert self._task is not None
        if self._task.done() and not self._task.cancelled() and self._task.exception():
            raise AssertionError("the tail crashed") from self._task.exception()

    async def until(self, predicate: Callable[[Run], bool], within: float = DEADLINE) -> None:
        """Wait until `predicate(self)` holds; fail with what was read at the deadline."""
        deadline = time.monotonic() + within
        while not predicate(self):
            self._check_alive()
            self.states.add(self.tail.health().state)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; read {self.ids}, health {self.tail.health()}, "
                    f"notes {self.tail.notes()}"
                )
            await asyncio.sleep(0.005)

    async def read(self, ids: list[int] | range, within: float = DEADLINE) -> None:
        """Wait until every id in `ids` has been read (at least once)."""
        wanted = set(ids)
        await self.until(lambda r: wanted <= set(r.ids), within)

    async def settle(self, quiet: float = QUIET) -> None:
        """Wait until no batch has come for `quiet` seconds (absence, proven by a short wait)."""
        count, since = len(self.checkpoints), time.monotonic()
        deadline = since + DEADLINE
        while time.monotonic() - since < quiet:
            self._check_alive()
            self.states.add(self.tail.health().state)
            assert time.monotonic() < deadline, "the tail never went quiet"
            await asyncio.sleep(0.005)
            if len(self.checkpoints) != count:
                count, since = len(self.checkpoints), time.monotonic()


@pytest.fixture
def reads_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tail's reads run on the event loop thread instead of a worker thread: a story's
    synchronous writes between two awaits are then atomic for the tail, whatever the timing
    (no read of the tail can be in flight in between)."""

    async def inline(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", inline)


# ---------------------------------------------------------------- 1. where a first run starts


@pytest.mark.parametrize("glob", [False, True], ids=["one-file", "glob"])
async def test_start_end_skips_what_is_there_and_reads_what_comes(
    tmp_path: Path, glob: bool
) -> None:
    """With a glob, an older log beside the current one is skipped as well."""
    log = tmp_path / "postgresql-2.csv"
    log.write_bytes(records(range(1, 4)))
    if glob:
        older = tmp_path / "postgresql-1.csv"
        older.write_bytes(records(range(91, 95)))
        os.utime(older, ns=(time.time_ns() - 10**9,) * 2)
    pattern = tmp_path / "postgresql-*.csv" if glob else log
    async with Run(make_tail(pattern, start="end")) as run:
        append(log, records(range(4, 7)))
        await run.read(range(4, 7))
        await run.settle()
    assert run.ids == [4, 5, 6]


async def test_start_beginning_reads_what_is_there_and_what_comes(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 4))
        append(log, records(range(4, 7)))
        await run.read(range(4, 7))
        await run.settle()
    assert run.ids == [1, 2, 3, 4, 5, 6]
    assert run.tail.health().state == "ok"


async def test_start_end_with_no_file_yet_reads_a_file_created_later_from_its_start(
    tmp_path: Path,
) -> None:
    log = tmp_path / "postgresql.csv"
    async with Run(make_tail(log, start="end")) as run:
        assert run.tail.health().state == "waiting"
        log.write_bytes(records(range(1, 4)))
        await run.read(range(1, 4))
        await run.settle()
    assert run.ids == [1, 2, 3]


# ------------------------------------------------------------------ 2. a partial line at EOF


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog", "stderr"])
@pytest.mark.parametrize("cut", [0.2, 0.9])
async def test_partial_last_line_is_read_once_after_a_restart(
    tmp_path: Path, fmt: str, cut: float
) -> None:
    """Half of record 2 at EOF: it waits (across a stop and a restart from the checkpoint) for
    the rest, then yields exactly one event, and nothing is counted malformed."""
    log = tmp_path / "postgresql.log"
    second = RECORDS[fmt](2)
    at = int(len(second) * cut)
    log.write_bytes(records([1], fmt) + second[:at])
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read([1])
        await run.settle(IDLE * 2)  # past the idle flush: the half line must still wait
    assert run.ids == [1]
    assert run.tail.health().malformed == 0
    saved = run.checkpoint
    assert saved == run.tail.checkpoint()

    async with Run(make_tail(log, start="beginning", checkpoint=saved)) as again:
        await again.settle(IDLE * 2)  # restarted and idle: still no half record
        append(log, second[at:] + records([3], fmt))
        await again.read([2, 3])
        await again.settle()
    assert again.ids == [2, 3]
    health = again.tail.health()
    assert (health.malformed, health.lost_bytes) == (0, 0)


async def test_partial_multiline_csv_record_cut_inside_its_statement(tmp_path: Path) -> None:
    """A csvlog record whose quoted statement spans lines, cut after one of its newlines."""
    log = tmp_path / "postgresql.csv"
    second = csv_record(2, multiline=True)
    at = second.index(b"\n") + 3
    log.write_bytes(csv_record(1) + second[:at])
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read([1])
        await run.settle(IDLE * 2)
    async with Run(make_tail(log, checkpoint=run.checkpoint)) as again:
        append(log, second[at:])
        await again.read([2])
        await again.settle()
    assert (run.ids, again.ids) == ([1], [2])
    assert again.tail.health().malformed == 0


# ------------------------------------------------------------ 3. restart in the middle of a file


@pytest.mark.parametrize("chunk", [100, 700, 4096])
async def test_restart_from_a_mid_file_checkpoint_reads_exactly_the_rest(
    tmp_path: Path, chunk: int
) -> None:
    log = tmp_path / "postgresql.csv"
    log.write_bytes(
        b"".join(
            csv_record(n, multiline=n % 7 == 0) + (NOISE if n % 5 == 0 else b"")
            for n in range(1, 41)
        )
    )
    async with Run(make_tail(log, start="beginning", chunk=chunk), max_batches=2) as first:
        await first.until(lambda r: len(r.checkpoints) == 2)
    assert first.ids, "the first run read nothing"
    assert first.ids == list(range(1, len(first.ids) + 1))
    assert len(first.ids) < 40, "the checkpoint is not in the middle of the file"

    async with Run(make_tail(log, start="end", checkpoint=first.checkpoint, chunk=chunk)) as rest:
        append(log, records(range(41, 46)))
        await rest.read(range(len(first.ids) + 1, 46))
        await rest.settle()
    assert first.ids + rest.ids == list(range(1, 46))


# ------------------------------------------------------------------ 4. unusable checkpoints


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"  \n",
        b"\x00\x17\xff\xfegarbage",
        b'{"version": 1, "source": ',
        b"[1, 2]",
        b'{"version": 1, "source": "x"}',
    ],
    ids=["zero-byte", "blank", "binary", "truncated-json", "not-an-object", "source-not-dict"],
)
def test_unusable_checkpoint_file_raises_a_one_line_error_naming_it(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "state" / "audit_log.checkpoint"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        CheckpointStore(path).load()
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message and "\r" not in message


def test_missing_checkpoint_file_means_a_first_run(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "nothing.json").load() is None


@pytest.mark.parametrize("start", ["end", "beginning"])
async def test_after_an_unusable_checkpoint_file_the_tail_starts_at_its_configured_start(
    tmp_path: Path, start: str
) -> None:
    """The consumer reports the CheckpointError and passes checkpoint=None: the tail then starts
    where settings say a first run starts (`end`: only new records; `beginning`: all)."""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    path = tmp_path / "checkpoint.json"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as caught:
        CheckpointStore(path).load()
    report = f"tablewatch: {caught.value}; starting at {start}"
    assert report == f"tablewatch: {path}: empty checkpoint file; starting at {start}"
    async with Run(make_tail(log, start=start, checkpoint=None)) as run:
        append(log, records(range(4, 6)))
        await run.read([4, 5])
        await run.settle()
    assert run.ids == ([1, 2, 3, 4, 5] if start == "beginning" else [4, 5])


@pytest.mark.parametrize(
    "saved",
    [
        {"files": "x"},
        {"files": None},
        {"files": [1]},
        {"files": {"dev": 1}},
        {"files": [{"dev": "x"}]},
        {"files": [{"dev": 1, "ino": 2, "path": "p", "offset": "far", "head_len": 0}]},
        {"files": [], "current": 5},
    ],
    ids=str,
)
async def test_checkpoint_of_the_wrong_shape_is_noted_and_the_tail_starts_as_a_first_run(
    tmp_path: Path, saved: dict[str, Any]
) -> None:
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    async with Run(make_tail(log, start="end", checkpoint=saved)) as run:
        append(log, records(range(4, 6)))
        await run.read([4, 5])
        await run.settle()
    assert run.ids == [4, 5]
    notes = run.tail.notes()
    assert len(notes) == 1 and "checkpoint unusable" in notes[0]
    assert notes[0] in run.tail.health().notes


async def test_checkpoint_with_a_negative_offset_does_not_crash_the_tail(tmp_path: Path) -> None:
    """A checkpoint edited by hand (or written by a bug) with a negative offset into the current
    file: the tail notes it and reads on, it does not die."""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 4))
    saved = json.loads(json.dumps(run.checkpoint))
    saved["files"][0]["offset"] = -1
    async with Run(make_tail(log, start="end", checkpoint=saved)) as again:
        append(log, records([4]))
        await again.read([4])
        await again.settle()
    assert again.ids.count(4) == 1
    assert again.tail.notes()


# ------------------------------------------------------------ 5. look-alike rotated files (glob)


@pytest.mark.parametrize(
    ("a_ids", "b_ids", "when"),
    [
        ([1, 2], [1, 3, 4], "live"),
        ([1, 2], [1], "live"),
        ([1], [1, 3], "live"),
        ([1], [1], "live"),
        ([1, 2], [1, 3, 4], "before-start"),
        ([1, 2], [1], "before-start"),
        ([1], [1, 3], "before-start"),
        ([1], [1], "before-start"),
    ],
    ids=[
        f"{when}-{size}"
        for when in ("live", "before-start")
        for size in ("both-long", "b-tiny", "a-tiny", "both-tiny")
    ],
)
async def test_new_file_starting_like_the_previous_one_is_read_whole(
    tmp_path: Path, a_ids: list[int], b_ids: list[int], when: str
) -> None:
    """PostgreSQL's own rotation to a new name: B's first line is byte-identical to A's (L1),
    the rest differs. `live`: B appears while the tail is at the end of A; `before-start`: both
    are there when it starts. A is never truncated, so B is no copy of it: every record of both
    is read once, then what the server goes on writing to B (record 9)."""
    a, b = tmp_path / "postgresql-1.csv", tmp_path / "postgresql-2.csv"
    a.write_bytes(records(a_ids))
    if when == "before-start":
        b.write_bytes(records(b_ids))
    async with Run(make_tail(tmp_path / "postgresql-*.csv", start="beginning")) as run:
        await run.until(lambda r: len(r.ids) >= len(a_ids))
        if when == "live":
            b.write_bytes(records(b_ids))
            await run.until(lambda r: str(b) in {f["path"] for f in r.tail.checkpoint()["files"]})
        append(b, records([9]))
        await run.read([9], within=1.0)
        await run.settle()
    assert run.ids == [*a_ids, *b_ids, 9]


# ------------------------------------------------------------- 6. rename rotation while running


@pytest.mark.parametrize("pause", [False, True], ids=["no-pause", "pause-after-rename"])
async def test_rename_rotation_while_running_reads_the_old_file_to_its_end_first(
    tmp_path: Path, pause: bool
) -> None:
    """The writer keeps writing to the renamed file until it switches to a new one."""
    log = tmp_path / "postgresql.csv"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, records(range(1, 4)))
        async with Run(make_tail(log, start="beginning")) as run:
            await run.read(range(1, 4))
            os.rename(log, tmp_path / "postgresql.csv.1")
            if pause:
                await run.settle()
            os.write(fd, records(range(4, 6)))  # the writer has not switched yet
            if pause:
                await run.read([4, 5])
            os.close(fd)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(fd, records(range(6, 9)))
            await run.read(range(1, 9))
            await run.settle()
    finally:
        os.close(fd)
    assert run.ids == list(range(1, 9))
    health = run.tail.health()
    assert health.rotations == 1
    assert (health.lost_bytes, health.malformed) == (0, 0)


# ----------------------------------------------------------- 7. rotation while the tail is down


async def test_two_rename_rotations_while_down_are_read_in_order_after_restart(
    tmp_path: Path,
) -> None:
    """logrotate twice while the consumer was stopped: .1 -> .2, current -> .1, a new current."""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 4))
        await run.settle()
    saved = json.loads(json.dumps(run.checkpoint))

    append(log, records(range(4, 6)))
    os.rename(log, tmp_path / "postgresql.csv.1")
    log.write_bytes(records(range(6, 9)))
    os.rename(tmp_path / "postgresql.csv.1", tmp_path / "postgresql.csv.2")
    os.rename(log, tmp_path / "postgresql.csv.1")
    log.write_bytes(records(range(9, 11)))

    async with Run(make_tail(log, start="end", checkpoint=saved)) as again:
        await again.read(range(4, 11))
        append(log, records([11]))
        await again.read([11])
        await again.settle()
    assert again.ids == list(range(4, 12))
    assert again.tail.health().lost_bytes == 0


# ------------------------------------------------------------------------------ 8. copytruncate


@pytest.mark.parametrize(
    "new",
    [
        [6],
        [6, 7, 8],
        ([6, 7, 8, 9]),
    ],
    ids=["shorter-than-read", "as-long-as-read", "longer-than-read"],
)
@pytest.mark.usefixtures("reads_on_the_loop")
async def test_copytruncate_recovers_unread_records_from_the_copy(
    tmp_path: Path, new: list[int]
) -> None:
    """Records 4-5 land while the tail sleeps; then logrotate copies and truncates, and the server
    writes `new` into the emptied file before the tail looks again. 4-5 come from the copy, the
    new records from the original, in order, once. (The tail had read records 1-3, which take
    as many bytes as three of the new ones.)"""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 4))
        await run.settle()
        # all synchronous: the tail cannot look between these steps
        append(log, records(range(4, 6)))
        shutil.copyfile(log, tmp_path / "postgresql.csv.1")
        os.truncate(log, 0)
        append(log, records(new))
        await run.read(range(1, new[-1] + 1))
        append(log, records([20]))
        await run.read([20])
        await run.settle()
    assert run.ids == [1, 2, 3, 4, 5, *new, 20]
    health = run.tail.health()
    assert health.rotations >= 1
    assert any("postgresql.csv.1" in note for note in health.notes)
    assert (health.lost_bytes, health.malformed) == (0, 0)


async def test_copytruncate_while_down_resumes_in_the_copy(tmp_path: Path) -> None:
    """The same rotation as above while the consumer is stopped: after the restart, 4-5 come from
    the copy (from the checkpoint's offset, not its start), then the new records."""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 4))
        await run.settle()
    append(log, records(range(4, 6)))
    shutil.copyfile(log, tmp_path / "postgresql.csv.1")
    os.truncate(log, 0)
    append(log, records([6]))
    async with Run(make_tail(log, checkpoint=run.checkpoint)) as again:
        await again.read(range(4, 7))
        await again.settle()
    assert again.ids == [4, 5, 6]
    assert again.tail.health().lost_bytes == 0


# ---------------------------------------------------- 9. log_truncate_on_rotation (name reused)


@pytest.mark.parametrize(
    ("new", "live"),
    [
        (range(4, 10), True),
        (range(11, 18), True),
        (range(4, 10), False),
        (range(11, 18), False),
    ],
    ids=["live-aligned", "live-unaligned", "while-down-aligned", "while-down-unaligned"],
)
@pytest.mark.usefixtures("reads_on_the_loop")
async def test_name_reused_and_rewritten_longer_is_read_from_its_start(
    tmp_path: Path, new: range, live: bool
) -> None:
    """`log_filename = 'postgresql.csv'` with log_truncate_on_rotation: at rotation the server
    truncates the file in place and writes on, and the new content outgrows what had been read
    (records 1-3) before the tail looks again (`live`), or while it is down. `aligned`: records
    4-9 have the length of 1-3, so the old offset falls on a record boundary of the new content;
    `unaligned`: records 11-17 are a little longer."""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 4))
        await run.settle()
        if live:
            # synchronous: truncated and rewritten between two looks of the tail
            with log.open("wb") as f:
                f.write(records(new))
            await run.read(new)
            await run.settle()
    tail = run.tail
    ids = run.ids
    if not live:
        with log.open("wb") as f:
            f.write(records(new))
        async with Run(make_tail(log, checkpoint=run.checkpoint)) as again:
            await again.read(new)
            await again.settle()
        tail, ids = again.tail, ids + again.ids
    assert ids == [1, 2, 3, *new]
    health = tail.health()
    assert (health.malformed, health.lost_bytes) == (0, 0)
    assert not any("lost" in note for note in health.notes), health.notes


@pytest.mark.usefixtures("reads_on_the_loop")
async def test_name_reused_and_rewritten_shorter_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 6)))
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 6))
        await run.settle()
        with log.open("wb") as f:
            f.write(records([11]))
        await run.read([11])
        append(log, records(range(12, 20)))
        await run.read(range(12, 20))
        await run.settle()
    assert run.ids == [1, 2, 3, 4, 5, *range(11, 20)]
    health = run.tail.health()
    assert (health.malformed, health.lost_bytes, health.rotations) == (0, 0, 1)


# ------------------------------------------------------------------ 10. a file that is not a log


async def _tail_beside_garbage(tmp_path: Path, size: int, garbage_is: str) -> tuple[Run, Path]:
    """A glob matching a binary file (`size` random bytes) and a log; the garbage is the `older`
    or the `newer` file. Reads the log's records 1-3, then 4-5 appended later."""
    garbage, log = tmp_path / "postgresql-0.csv", tmp_path / "postgresql-1.csv"
    log.write_bytes(records(range(1, 4)))
    garbage.write_bytes(random.Random(size).randbytes(size))
    older = garbage if garbage_is == "older" else log
    os.utime(older, ns=(time.time_ns() - 10**9,) * 2)
    async with Run(make_tail(tmp_path / "postgresql-*.csv", start="beginning")) as run:
        await run.read(range(1, 4))
        await run.settle()
        append(log, records(range(4, 6)))
        await run.read([4, 5])
        await run.settle()
    assert run.ids == [1, 2, 3, 4, 5]
    return run, garbage


@pytest.mark.parametrize(
    ("size", "garbage_is"),
    [
        (3000, "older"),
        (3000, "newer"),
        (100_000, "older"),
        (100_000, "newer"),
    ],
)
async def test_binary_file_matched_by_the_pattern_shows_in_health_and_logs_still_read(
    tmp_path: Path, size: int, garbage_is: str
) -> None:
    """No crash, every record of the log read, and at some point the health says so: state
    `error`, or something counted malformed, or a note naming the file."""
    run, garbage = await _tail_beside_garbage(tmp_path, size, garbage_is)
    health = run.tail.health()
    assert (
        "error" in run.states
        or health.malformed > 0
        or any(garbage.name in note for note in health.notes)
    ), f"the binary file never showed: states {run.states}, {health}"


@pytest.mark.parametrize("garbage_is", ["older", "newer"])
async def test_binary_file_skipped_is_still_reported_after_the_tail_moves_on(
    tmp_path: Path, garbage_is: str
) -> None:
    """A whole file's content skipped is worth telling the operator once (a note, as for bad
    checkpoints and losses), not only while the tail happens to sit on it."""
    run, garbage = await _tail_beside_garbage(tmp_path, 100_000, garbage_is)
    health = run.tail.health()
    assert health.malformed > 0 or any(garbage.name in note for note in health.notes), health


# --------------------------------------------------------------- 11. the checkpoint round-trips


async def test_checkpoint_saved_and_loaded_resumes_exactly(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 6)))
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 6))
        await run.settle()
    store = CheckpointStore(tmp_path / "state" / "audit_log.json")
    store.save(run.checkpoint, {"events": len(run.ids)})
    on_disk = json.loads(store.path.read_text())
    assert on_disk == {"version": 1, "source": run.checkpoint, "consumer": {"events": 5}}
    loaded = store.load()
    assert loaded == (run.checkpoint, {"events": 5})
    assert os.stat(store.path).st_mode & 0o777 == 0o600

    source, _ = loaded
    append(log, records(range(6, 9)))
    async with Run(make_tail(log, start="beginning", checkpoint=source)) as again:
        await again.read(range(6, 9))
        await again.settle()
    assert again.ids == [6, 7, 8]
    assert again.tail.notes() == []


async def test_copytruncate_between_choosing_a_file_and_reading_it_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """The consumer stopped right after the tail moved to a new log (its checkpoint: that log,
    offset 0), before a byte of it was read; logrotate then copied and truncated it and the server
    wrote on. The log's first content is in the copy: read that first, then the new, once."""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    async with Run(make_tail(log, start="beginning"), max_batches=2) as run:
        await run.read(range(1, 4))
        os.rename(log, tmp_path / "postgresql.csv.1")
        log.write_bytes(records(range(6, 9)))
        await run.until(lambda r: len(r.checkpoints) == 2)
    current = next(
        f for f in run.checkpoint["files"] if [f["dev"], f["ino"]] == run.checkpoint["current"]
    )
    assert current["path"] == str(log), run.checkpoint
    assert current["offset"] == 0 and run.ids == [1, 2, 3]
    append(log, records([9]))
    shutil.copyfile(log, tmp_path / "postgresql.csv.2")
    os.truncate(log, 0)
    append(log, records([10]))
    async with Run(make_tail(log, checkpoint=run.checkpoint)) as again:
        await again.read(range(6, 11))
        await again.settle()
    assert again.ids == [6, 7, 8, 9, 10]
    assert again.tail.health().lost_bytes == 0


async def test_a_rotation_between_choosing_a_file_and_opening_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log is renamed away and a new one created just after the tail chose it by name: the
    tail opens the file it chose (by its inode, under its new name), then the new one."""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(records(range(1, 4)))
    choose = LogTail._next_file
    rotated = False

    def racing(self: LogTail) -> Any:
        nonlocal rotated
        chosen = choose(self)
        if chosen is not None and not rotated and chosen.path == str(log):
            rotated = True
            os.rename(log, tmp_path / "postgresql.csv.1")
            log.write_bytes(records(range(4, 6)))
        return chosen

    monkeypatch.setattr(LogTail, "_next_file", racing)
    async with Run(make_tail(log, start="beginning")) as run:
        await run.read(range(1, 6))
        await run.settle()
    assert rotated and run.ids == [1, 2, 3, 4, 5]


async def test_how_far_behind_is_known_before_the_end_of_the_file(tmp_path: Path) -> None:
    """A tail that is behind never reaches the end of its file, where the size is learned: its
    health still says how many bytes are left to read."""
    log = tmp_path / "postgresql.csv"
    log.write_bytes(b"".join(csv_record(n) for n in range(20_000)))  # ~4 MB
    tail = LogTail(
        str(log),
        EventBuilder(WatchedTables([TableName.parse("crm.client_list")])),
        fmt="csvlog",
        start="beginning",
    )
    batches = tail.batches()
    try:
        first = await anext(batches)
        assert first.events
        with log.open("ab") as more:  # the server writes on
            more.write(b"".join(csv_record(n) for n in range(20_000, 30_000)))
        behind = tail.health().bytes_behind
        read = first.checkpoint["files"][0]["offset"]
        assert behind == log.stat().st_size - read > 0
    finally:
        await batches.aclose()
