"""A model of `LogTail` against random histories of a log directory (hypothesis stateful).

A writer appends csvlog pgaudit records (record n has statement_id n) to `postgresql.csv` and
rotates it the ways deployments do: rename to `postgresql.csv.N` and a new file, the writer
switching at once or after a while (Rotate, Reopen), copy to `postgresql.csv.N` then truncate in
place (Copytruncate), truncate with no copy (Truncate), and a rotated file removed (Delete). Or,
PostgreSQL's own naming, the tail on the glob `postgresql-*.csv`: Rotate moves to the next name,
reused and truncated in lossy runs (log_truncate_on_rotation). A consumer reads with the tail
(Read: to idle, or a few batches), saves the checkpoint of its last batch with its own state
(`CheckpointStore`, as tests/tail_driver.py does), stops cleanly (Restart: saves, a new `LogTail`
from the checkpoint) or dies (Kill: nothing saved; a new tail from the checkpoint saved last, and
the consumer cuts its output back to what that checkpoint covers).

What the tail promises (module docstring of collectors/tail.py, README "Following the log"), as
checked here:

- every record delivered was written; the consumer's output (`kept`) holds each record at most
  once and in the order written (record ids grow with time, so: strictly increasing);
- a record is delivered a second time only after a Kill, and only if it was delivered after the
  checkpoint saved last: once per such Kill (`allowed_extra`);
- after a Read to idle, every record written is in `kept` unless the model knows it may be gone:
  in a file truncated without a copy or deleted before the consumer had saved it (`unreadable`).
  Copytruncate is modelled without a write between copy and truncation, so it loses nothing;
- `lost_bytes` counts only real losses: the sum over every tail is at most the size of the records
  in `unreadable` (so 0 on a history with no Truncate, Delete or reused name). The tail can only
  count bytes it has seen, so this is an upper bound, not an equality.

The tail is driven one `_step` at a time (the loop of `batches()`), on a fake clock that replaces
`time` inside collectors.tail: no sleeps, and a Read ends when the tail has made no progress
through several poll intervals and past its idle flush. File times come from a logical clock
(each write, creation, copy and truncation a tick later), so runs do not depend on the kernel's
timestamp granularity. Quick and derandomized here; `bench/tail_model_bench.py` runs thousands.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import collectors.tail
from collectors.checkpoint import CheckpointStore
from collectors.events import EventBuilder
from collectors.tail import LogTail
from core.sources import EventBatch
from core.tables import TableName, WatchedTables
from tests.logwriter import csv_record

LOG = "postgresql.csv"
"""logrotate naming: the pattern is this file, rotated ones are `postgresql.csv.N`."""
WRAP = 3
"""PostgreSQL naming (pattern `postgresql-*.csv`) in lossy runs: `postgresql-{N % WRAP}.csv`,
truncated when reused (log_truncate_on_rotation); lossless runs never reuse a name."""
POLL = 0.25
IDLE_FLUSH = 1.0
IDLE_STEPS = 8
"""Steps without progress, each a poll interval and a bit later, before a Read calls it idle:
longer than the idle flush and several scans."""
MAX_STEPS = 20_000
MTIME_BASE = 1_790_000_000 * 10**9
MTIME_TICK = 10_000_000


@dataclass
class ModelStats:
    """Counts over every run of the machine in this process (the bench prints them)."""

    examples: int = 0
    steps: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    written: int = 0
    delivered: int = 0
    redelivered: int = 0
    unreadable: int = 0
    """Records the model marked as possibly gone (truncated without copy, deleted unsaved)."""
    missing: int = 0
    """Of those, records never delivered in the end (checked at each Read to idle)."""
    lost_bytes: int = 0
    """The tails' own count, summed."""
    lossy_runs: int = 0
    """Runs allowed Truncate and Delete (the others must read exactly what was written)."""


STATS = ModelStats()


class FakeClock:
    """Stands in for the `time` module inside collectors.tail (it only asks `monotonic`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class TailModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="tail-model-")
        self.dir = Path(self._tmp.name)
        self.naming = "logrotate"
        self.current = LOG
        """The file the pattern names as the live log."""
        self.clock = FakeClock()
        self._patch = mock.patch.object(collectors.tail, "time", self.clock)
        self._patch.start()
        self.loop = asyncio.new_event_loop()
        self.store = CheckpointStore(self.dir / "state" / "audit_log.json")
        self.chunk = 1 << 16
        self.lossy = True
        self.writing_to = LOG
        """The file the writer appends to: a renamed one until it reopens (Rotate, reopen=False)."""
        self.tail: LogTail | None = None
        self.last_checkpoint: dict[str, Any] | None = None
        # the model: what is on disk, what was written, what the consumer holds
        self.files: dict[str, list[int]] = {}
        self.rotations = 0
        self.next_id = 1
        self.tick = 0
        self.written: list[int] = []
        self.unreadable: set[int] = set()
        self.kept: list[int] = []
        self.saved_len = 0
        self.delivered: Counter[int] = Counter()
        self.allowed_extra: Counter[int] = Counter()
        self.lost_before = 0
        STATS.examples += 1

    @property
    def log(self) -> Path:
        return self.dir / self.current

    @property
    def pattern(self) -> str:
        return str(self.dir / (LOG if self.naming == "logrotate" else "postgresql-*.csv"))

    # ------------------------------------------------------------------ helpers

    def _fired(self, name: str) -> None:
        STATS.steps += 1
        STATS.rules[name] += 1

    def _touch(self, path: Path) -> None:
        self.tick += 1
        ns = MTIME_BASE + self.tick * MTIME_TICK
        os.utime(path, ns=(ns, ns))

    def _start(self, checkpoint: dict[str, Any] | None) -> None:
        builder = EventBuilder(WatchedTables([TableName.parse("crm.client_list")]))
        self.tail = LogTail(
            self.pattern,
            builder,
            start="beginning",
            checkpoint=checkpoint,
            poll_interval=POLL,
            idle_flush=IDLE_FLUSH,
            chunk=self.chunk,
        )
        self.last_checkpoint = None
        self.tail._restore()  # what `batches()` does first

    def _stop(self) -> None:
        assert self.tail is not None
        self.lost_before += self.tail.health().lost_bytes
        self.tail._close()  # what `batches()` does when closed (or the process dies)
        self.tail = None

    def _saved(self) -> dict[str, Any] | None:
        loaded = self.store.load()
        return None if loaded is None else loaded[0]

    def _save(self) -> None:
        if self.last_checkpoint is not None:
            self.store.save(self.last_checkpoint, {"kept": len(self.kept)})
            self.saved_len = len(self.kept)

    def _deliver(self, batch: EventBatch) -> None:
        ids = [e.statement_id for e in batch.events]
        for n in ids:
            assert isinstance(n, int), f"event without a statement id: {batch.events}"
            self.delivered[n] += 1
            if self.delivered[n] > 1:
                STATS.redelivered += 1
        STATS.delivered += len(ids)
        self.kept.extend(n for n in ids if isinstance(n, int))
        self.last_checkpoint = batch.checkpoint

    async def _drive(self, limit: int | None) -> None:
        """Step the tail until `limit` batches were taken or it has nothing left to do."""
        assert self.tail is not None
        batches = idle = 0
        for _ in range(MAX_STEPS):
            batch, progressed = await self.tail._step()
            if batch is not None:
                self._deliver(batch)
                batches += 1
                if limit is not None and batches >= limit:
                    return
                idle = 0
            elif progressed:
                idle = 0
            else:
                idle += 1
                if idle > IDLE_STEPS:
                    return
                self.clock.now += POLL * 1.2
        raise AssertionError(f"the tail never went idle: {self.tail.health()}")

    def _unsaved(self, ids: list[int]) -> set[int]:
        saved = set(self.kept[: self.saved_len])
        return {n for n in ids if n not in saved}

    def _lose(self, ids: list[int]) -> None:
        gone = self._unsaved(ids) - self.unreadable
        STATS.unreadable += len(gone)
        self.unreadable |= gone

    def _deletable(self) -> list[str]:
        return sorted(name for name in self.files if name not in (self.current, self.writing_to))

    def _lost_bytes(self) -> int:
        return self.lost_before + (self.tail.health().lost_bytes if self.tail else 0)

    # ------------------------------------------------------------------ rules

    @initialize(
        chunk=st.sampled_from([150, 700, 4096, 1 << 16]),
        lossy=st.booleans(),
        naming=st.sampled_from(["logrotate", "postgres"]),
    )
    def begin(self, chunk: int, lossy: bool, naming: str) -> None:
        """A chunk below one record (~230 bytes) makes the tail hold partial records. Half the
        histories have no Truncate or Delete (nor a reused name): there, what is read must be
        exactly what was written."""
        self.chunk = chunk
        self.lossy = lossy
        self.naming = naming
        self.current = self.writing_to = LOG if naming == "logrotate" else "postgresql-0.csv"
        self.log.write_bytes(b"")
        self._touch(self.log)
        self.files[self.current] = []
        STATS.lossy_runs += lossy
        self._start(None)

    @rule(n=st.integers(1, 4))
    def write(self, n: int) -> None:
        self._fired("Write")
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        path = self.dir / self.writing_to
        with path.open("ab") as f:
            f.write(b"".join(csv_record(i) for i in ids))
        self._touch(path)
        self.files[self.writing_to].extend(ids)
        self.written.extend(ids)
        STATS.written += n

    def _rotated_name(self) -> str:
        self.rotations += 1
        return f"{LOG}.{self.rotations}"

    @precondition(lambda self: self.writing_to == self.current)
    @rule(reopen=st.booleans())
    def rotate(self, reopen: bool) -> None:
        """logrotate: rename, a new empty file; the writer switches to it at once or
        (reopen=False) goes on writing to the renamed file for a while (logrotate's `create`
        before the server is told to reopen). PostgreSQL: the next name, created or (reused)
        truncated, written from then on."""
        self._fired("Rotate")
        if self.naming == "postgres":
            self.rotations += 1
            k = self.rotations % WRAP if self.lossy else self.rotations
            self.current = self.writing_to = f"postgresql-{k}.csv"
            self._lose(self.files.get(self.current, []))
            self.log.write_bytes(b"")  # O_TRUNC: log_truncate_on_rotation
            self._touch(self.log)
            self.files[self.current] = []
            return
        name = self._rotated_name()
        os.rename(self.log, self.dir / name)
        self.files[name] = self.files[LOG]
        self.log.write_bytes(b"")
        self._touch(self.log)
        self.files[LOG] = []
        if not reopen:
            self.writing_to = name

    @precondition(lambda self: self.writing_to != self.current)
    @rule()
    def reopen(self) -> None:
        """The writer switches to the new file."""
        self._fired("Reopen")
        self.writing_to = self.current

    @precondition(lambda self: self.naming == "logrotate" and self.writing_to == LOG)
    @rule()
    def copytruncate(self) -> None:
        """Copy, then truncate in place, with no write in between: nothing may be lost."""
        self._fired("Copytruncate")
        name = self._rotated_name()
        shutil.copyfile(self.log, self.dir / name)
        self._touch(self.dir / name)
        os.truncate(self.log, 0)
        self._touch(self.log)
        self.files[name] = self.files[LOG]
        self.files[LOG] = []

    @precondition(lambda self: self.lossy)
    @rule()
    def truncate(self) -> None:
        """Truncated with no copy (log_truncate_on_rotation, or an operator): what the consumer
        has not saved may be gone."""
        self._fired("Truncate")
        path = self.dir / self.writing_to
        os.truncate(path, 0)
        self._touch(path)
        self._lose(self.files[self.writing_to])
        self.files[self.writing_to] = []

    @precondition(lambda self: self.lossy and self._deletable())
    @rule(which=st.integers(0, 7))
    def delete(self, which: int) -> None:
        """A rotated file removed (logrotate's `rotate N`, an operator), not one still written."""
        self._fired("Delete")
        names = self._deletable()
        name = names[which % len(names)]
        os.unlink(self.dir / name)
        self._lose(self.files.pop(name))

    @rule(limit=st.one_of(st.none(), st.integers(1, 3)), save=st.booleans())
    def read(self, limit: int | None, save: bool) -> None:
        """Let the tail read: to idle (None) or `limit` batches; then maybe save."""
        self._fired("Read" if limit is None else "ReadSome")
        self.loop.run_until_complete(self._drive(limit))
        if save:
            self._save()
        if limit is None:
            missing = set(self.written) - set(self.kept)
            if not self.unreadable:
                assert self.kept == self.written, "read is not exactly what was written"
            unexplained = sorted(missing - self.unreadable)
            assert not unexplained, (
                f"records lost with nothing to explain it: {unexplained}; "
                f"files {self.files}, notes {self.tail.notes() if self.tail else []}"
            )

    @rule()
    def restart(self) -> None:
        """A clean stop: the last batch's checkpoint saved, a new tail from it."""
        self._fired("Restart")
        self._save()
        self._stop()
        self._start(self._saved())

    @rule()
    def kill(self) -> None:
        """kill -9: nothing saved; the consumer cuts its output back to the saved checkpoint, the
        records after it may come again (once)."""
        self._fired("Kill")
        self._stop()
        for n in self.kept[self.saved_len :]:
            self.allowed_extra[n] += 1
        del self.kept[self.saved_len :]
        self._start(self._saved())

    # ------------------------------------------------------------------ invariants

    @invariant()
    def delivered_only_what_was_written_and_duplicates_only_after_a_kill(self) -> None:
        for n, count in self.delivered.items():
            assert 1 <= n < self.next_id, f"record {n} was never written"
            assert count <= 1 + self.allowed_extra[n], (
                f"record {n} delivered {count} times, {self.allowed_extra[n]} kill(s) allowed it"
            )

    @invariant()
    def kept_once_in_written_order(self) -> None:
        assert all(a < b for a, b in zip(self.kept, self.kept[1:], strict=False)), (
            f"out of order or twice: {self.kept}"
        )

    @invariant()
    def lost_bytes_count_only_real_losses(self) -> None:
        could_be_lost = sum(len(csv_record(n)) for n in self.unreadable)
        lost = self._lost_bytes()
        assert lost <= could_be_lost, (
            f"lost_bytes {lost} > {could_be_lost} bytes of records that could be gone"
        )

    def teardown(self) -> None:
        try:
            if self.tail is not None:
                STATS.lost_bytes += self._lost_bytes()
                missing = set(self.written) - set(self.kept)
                STATS.missing += len(missing & self.unreadable)
                self.tail._close()
        finally:
            self.loop.close()
            self._patch.stop()
            self._tmp.cleanup()


QUICK = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestTailModel = TailModel.TestCase
TestTailModel.settings = QUICK
