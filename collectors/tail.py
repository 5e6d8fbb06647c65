"""Follow a PostgreSQL log file or glob across rotation, with an exact checkpoint.

Files are known by (device, inode) and a fingerprint of their first bytes (up to HEAD_BYTES):
- rename rotation (logrotate's default; or a new file name per period, PostgreSQL's own): the old
  file is drained to its end before the next one is read, also after a restart (the renamed file is
  found by its inode in the directory);
- copytruncate: the truncation is seen (size below our position, or the head changed); what we had
  not read yet is taken from the copy (a file in the same directory that starts with the same
  bytes), and only what was written between the copy and the truncation can be lost: that is
  counted;
- `log_truncate_on_rotation` (a name reused and truncated in place, `postgresql-%a.csv`): the same
  inode with a new head is a new file, read from its start.
Only whole records are consumed; a partial last line waits for the rest. The checkpoint (what
`EventBatch.checkpoint` carries) is the position just after the batch; the consumer persists it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import hashlib
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from collectors.events import EventBuilder
from collectors.logformats import LogFormat, make_format, sniff
from collectors.prefix import DEFAULT_PREFIX
from core.events import AccessEvent
from core.sources import EventBatch, SourceHealth

_log = logging.getLogger(__name__)

HEAD_BYTES = 4096
_RECENT = 4096
CHUNK = 1 << 18
"""Bytes read at a time: parsing 256 KiB takes ~35 ms, so /metrics and the API never wait long."""
_MAX_KNOWN = 1000


@dataclass(slots=True)
class _File:
    dev: int
    ino: int
    path: str
    offset: int
    head_len: int
    head_sha: str
    size: int = 0
    mtime_ns: int = 0
    seq: int = 0
    """Order of discovery: breaks mtime ties (file times are only as fine as the kernel tick)."""
    tail_len: int = 0
    tail_sha: str = ""
    """Fingerprint of the bytes just before `offset`: how a copy of the file is recognised."""
    shadow: bool = False
    """Taken for a copytruncate copy of the file being read: not read unless it grows."""

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def restart(self) -> None:
        """Forget what was read: the file is to be read from its start (head taken anew)."""
        self.offset, self.head_len, self.head_sha = 0, -1, ""
        self.tail_len, self.tail_sha, self.shadow = 0, "", False

    def to_json(self) -> dict[str, Any]:
        return {
            "dev": self.dev,
            "ino": self.ino,
            "path": self.path,
            "offset": self.offset,
            "head_len": self.head_len,
            "head_sha": self.head_sha,
            "seq": self.seq,
            "tail_len": self.tail_len,
            "tail_sha": self.tail_sha,
            "shadow": self.shadow,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _File:
        """A file of a checkpoint.

        Raises:
            KeyError, TypeError, ValueError: not a file entry of a checkpoint.
        """
        f = cls(
            int(data["dev"]),
            int(data["ino"]),
            str(data["path"]),
            int(data["offset"]),
            int(data["head_len"]),
            str(data["head_sha"]),
            seq=int(data.get("seq", 0)),
            tail_len=int(data.get("tail_len", 0)),
            tail_sha=str(data.get("tail_sha", "")),
            shadow=bool(data.get("shadow", False)),
        )
        if min(f.offset, f.head_len, f.tail_len, f.seq) < 0 or f.tail_len > f.offset:
            raise ValueError(f"impossible position in checkpoint entry {data!r:.200}")
        return f


def _sha(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _head_of(path: str, length: int) -> tuple[int, str]:
    """(bytes hashed, sha1) of the first `length` bytes of a file (fewer if it is shorter)."""
    with open(path, "rb") as f:
        data = f.read(length)
    return len(data), _sha(data)


_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?")


def _first_timestamp(path: str) -> str:
    """The first log timestamp in a file ("" if none): orders files written in the same tick."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return ""
    match = _TIMESTAMP.search(head)
    return match.group().decode() if match else ""


def _stat(path: str) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


class LogTail:
    """An `EventSource` over a PostgreSQL log file or glob."""

    def __init__(
        self,
        pattern: str,
        builder: EventBuilder,
        *,
        fmt: str = "auto",
        log_line_prefix: str = DEFAULT_PREFIX,
        start: str = "end",
        checkpoint: dict[str, Any] | None = None,
        poll_interval: float = 0.25,
        idle_flush: float = 1.0,
        chunk: int = CHUNK,
        name: str = "audit_log",
    ) -> None:
        self.name = name
        self.pattern = str(Path(pattern).expanduser())
        self.builder = builder
        self.fmt = fmt
        self.prefix = log_line_prefix
        self.start = start
        self.poll_interval = poll_interval
        self.idle_flush = idle_flush
        self.chunk = chunk
        self._saved = checkpoint
        self._known: dict[tuple[int, int], _File] = {}
        self._cur: _File | None = None
        self._fd: int | None = None
        self._parser: LogFormat | None = None
        self._parsers: dict[str, LogFormat] = {}
        self._pending = b""
        self._recent = b""
        self._head = b""
        self._seq = 0
        self._last_growth = 0.0
        self._last_scan = 0.0
        self._last_event_time: datetime | None = None
        self._lost_bytes = 0
        self._rotations = 0
        self._error = ""
        self._notes: list[str] = []

    # ------------------------------------------------------------------ public

    def notes(self) -> list[str]:
        """Things worth telling the operator once (restarts, bad checkpoints, losses)."""
        return list(self._notes)

    def note(self, text: str) -> None:
        """Record a note (shown in the health and logged by the owner)."""
        self._notes.append(text)
        del self._notes[:-20]

    def checkpoint(self) -> dict[str, Any]:
        """The position after everything consumed so far."""
        return {
            "pattern": self.pattern,
            "current": list(self._cur.key) if self._cur else None,
            "files": [f.to_json() for f in list(self._known.values())[-_MAX_KNOWN:]],
        }

    def health(self) -> SourceHealth:
        stats = self.builder.stats
        behind = sum(max(f.size - f.offset, 0) for f in self._known.values() if f is not self._cur)
        if self._cur is not None:
            # the current file's size is otherwise learned at its end, which a tail that is
            # behind does not reach: ask now (health is read about once a second), without
            # changing what the rotation checks know
            size = self._cur.size
            if self._fd is not None:
                try:
                    size = max(size, os.fstat(self._fd).st_size)
                except OSError:
                    pass
            behind += max(size - self._cur.offset, 0)
        if self._error:
            state = "error"
        elif self._cur is None:
            state = "waiting"
        else:
            state = "ok"
        detail = self._error or (self._cur.path if self._cur else f"no file matches {self.pattern}")
        return SourceHealth(
            name=self.name,
            state=state,
            detail=detail,
            last_event_time=self._last_event_time,
            bytes_behind=behind,
            events=stats.events,
            records=stats.records,
            malformed=stats.malformed,
            forged=stats.forged,
            lost_bytes=self._lost_bytes,
            rotations=self._rotations,
            notes=tuple(self._notes),
        )

    async def batches(self) -> AsyncIterator[EventBatch]:
        """Batches of events until cancelled; each carries the checkpoint after it."""
        self._restore()
        try:
            while True:
                batch, progressed = await self._step()
                if batch is not None:
                    yield batch
                elif not progressed:
                    await asyncio.sleep(self.poll_interval)
        finally:
            self._close()

    # ------------------------------------------------------------------ start

    def _restore(self) -> None:
        saved = self._saved
        if saved is not None:
            try:
                files = [_File.from_json(f) for f in saved.get("files", [])]
                current = tuple(saved["current"]) if saved.get("current") else None
            except (KeyError, TypeError, ValueError) as exc:
                self.note(
                    f"checkpoint unusable ({exc!r}); starting as on a first run ({self.start})"
                )
                saved = None
            else:
                for f in files:
                    self._known[f.key] = f
                    self._seq = max(self._seq, f.seq)
                if current is not None and current in self._known:
                    self._resume(self._known[current])
                return
        scanned = [f for f in self._scan() if self._fill_head(f)]
        if self.start == "end":
            for f in scanned:
                f.offset = f.size
                self._remember(f)
            if scanned:
                self._open(max(scanned, key=lambda f: (f.mtime_ns, f.path)))

    def _resume(self, saved: _File) -> None:
        """Reopen the file we were reading, wherever rotation has moved it."""
        path = saved.path
        st = _stat(path)
        if st is None or (st.st_dev, st.st_ino) != saved.key:
            path = self._find_inode(saved) or ""
        if not path:
            self.note(f"{saved.path}: gone since the last run; unread records in it are lost")
            return
        saved.path = path
        if not self._same_head(saved):
            copy = self._find_copy(saved)
            # Its content is now the newest, so files with older unread data come first
            # (_next_file orders them): the copy of what it held, if copytruncate made one.
            fresh = _File(saved.dev, saved.ino, path, 0, -1, "", 0, 0)
            self._fill_head(fresh)
            self._remember(fresh)
            if copy is not None:
                self.note(
                    f"{path}: truncated since the last run; reading the rest from {copy.path}"
                )
                copy.offset = saved.offset
                self._remember(copy)
                self._open(copy)
            else:
                self.note(f"{path}: rewritten since the last run; reading it from the start")
            return
        self._open(saved)

    def _find_inode(self, saved: _File) -> str | None:
        directory = os.path.dirname(self.pattern) or "."
        try:
            names = os.listdir(directory)
        except OSError:
            return None
        for name in names:
            path = os.path.join(directory, name)
            st = _stat(path)
            if st is not None and (st.st_dev, st.st_ino) == saved.key:
                return path
        return None

    # ------------------------------------------------------------------ files

    def _scan(self) -> list[_File]:
        """The regular files the pattern matches now, and their rotated siblings.

        A sibling is `<match>.<suffix>` (logrotate's `postgresql.csv.1`, `postgresql.csv-2026...`):
        a file rotated while we were behind or down is read before the file that replaced it.
        Heads are not read yet (head_len = -1).
        """
        paths = set(glob.glob(self.pattern)) if glob.has_magic(self.pattern) else {self.pattern}
        paths.update(
            glob.glob(glob.escape(self.pattern) + "[.-]*")
            if not glob.has_magic(self.pattern)
            else glob.glob(self.pattern + "[.-]*")
        )
        found: list[_File] = []
        for path in sorted(paths):
            if path.endswith(".gz"):
                continue
            st = _stat(path)
            if st is not None:
                found.append(
                    _File(st.st_dev, st.st_ino, path, 0, -1, "", st.st_size, st.st_mtime_ns)
                )
        return found

    def _remember(self, f: _File) -> None:
        """Know `f` as the newest-discovered file (or the newest incarnation of its name)."""
        self._seq += 1
        f.seq = self._seq
        self._known[f.key] = f

    def _fill_head(self, f: _File) -> bool:
        if f.head_len >= 0:
            return True
        try:
            f.head_len, f.head_sha = _head_of(f.path, HEAD_BYTES)
        except OSError:
            return False
        return True

    def _same_head(self, f: _File) -> bool:
        """Whether the file at f.path still starts as it did (not rewritten in place)."""
        try:
            length, sha = _head_of(f.path, f.head_len)
        except OSError:
            return False
        return length == f.head_len and sha == f.head_sha

    def _current_head_ok(self) -> bool:
        assert self._cur is not None and self._fd is not None
        cur = self._cur
        data = os.pread(self._fd, cur.head_len, 0)
        return len(data) == cur.head_len and _sha(data) == cur.head_sha

    def _looks_like_copy(self, f: _File) -> bool:
        """Whether a new file may be a copytruncate copy of the one being read, made before the
        truncation: no longer than the original, and holding what we have read of it."""
        cur = self._cur
        if cur is None or self._fd is None:
            return False
        try:
            size_now = os.fstat(self._fd).st_size
        except OSError:
            return False
        return f.size <= size_now and self._is_copy_of(cur, f.path, f.size)

    def _is_copy_of(self, f: _File, path: str, size: int) -> bool:
        """Whether the file at `path` holds what `f` held up to our position in it.

        It must start with the same bytes and hold, just before that position, the bytes we read
        last: a new log that merely starts with the same line is not a copy.
        """
        if f.head_len <= 0 or size < max(f.offset, f.head_len):
            return False
        if f.offset == 0:
            # nothing read of it yet: a file that starts as it started holds what it held
            try:
                length, sha = _head_of(path, f.head_len)
            except OSError:
                return False
            return length == f.head_len and sha == f.head_sha
        if f.tail_len <= 0:
            return False
        try:
            length, sha = _head_of(path, f.head_len)
            with open(path, "rb") as g:
                g.seek(f.offset - f.tail_len)
                around = g.read(f.tail_len)
        except OSError:
            return False
        return length == f.head_len and sha == f.head_sha and _sha(around) == f.tail_sha

    def _open(self, f: _File) -> None:
        self._close()
        fd = self._open_inode(f)
        if fd is None:
            return
        self._fd = fd
        self._error = ""
        self._cur = f
        self._known[f.key] = f
        self._pending = b""
        # The head is what we have read from the start of this incarnation of the file. Opened
        # at its start, the file keeps the head it had when it was looked at (scan, checkpoint)
        # until the first read replaces it: a file rewritten between the look and the read
        # (copytruncate under way, a name reused) is then seen as truncated, and its copy, which
        # starts with that head, holds what was there. The checkpoint carries it across restarts.
        if f.offset == 0:
            self._head = b""
            if f.head_len < HEAD_BYTES:
                head = os.pread(fd, HEAD_BYTES, 0)
                if f.head_len <= 0 or _sha(head[: f.head_len]) == f.head_sha:
                    # still as seen, maybe longer now: the longer head tells a copy better
                    f.head_len, f.head_sha = len(head), _sha(head)
                # else rewritten since it was seen: the first read will find it truncated
        else:
            self._head = os.pread(self._fd, min(f.head_len, HEAD_BYTES), 0)
            if _sha(self._head) != f.head_sha or len(self._head) != f.head_len:
                self.note(f"{f.path}: rewritten since it was last read; reading it from the start")
                f.restart()
                self._head = b""
            f.head_len, f.head_sha = len(self._head), _sha(self._head)
        # the bytes just before our position: how a copy of this file is told from a look-alike
        back = min(_RECENT, f.offset)
        self._recent = os.pread(self._fd, back, f.offset - back) if back else b""
        f.tail_len, f.tail_sha = len(self._recent), _sha(self._recent)
        self._parser = None
        self._last_growth = time.monotonic()

    def _open_inode(self, f: _File) -> int | None:
        """A descriptor of the very file `f` (its device and inode), wherever it now is: the name
        seen at the scan may have been rotated onto another file since."""
        for path in (f.path, None):
            if path is None:
                path = self._find_inode(f)
                if path is None:
                    self._error = f"{f.path}: rotated away before it could be opened"
                    return None
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                self._error = f"{path}: cannot open: {exc.strerror}"
                return None
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == f.key:
                f.path = path
                return fd
            os.close(fd)
        self._error = f"{f.path}: rotated while being opened"
        return None

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _parser_for(self, data: bytes) -> LogFormat | None:
        if self._parser is None:
            fmt = self.fmt
            if fmt == "auto":
                found = sniff(data, self.prefix)
                if found is None:
                    return None
                fmt = found
            if fmt not in self._parsers:
                self._parsers[fmt] = make_format(fmt, self.builder, self.prefix)
            self._parser = self._parsers[fmt]
        return self._parser

    # ------------------------------------------------------------------ reading

    async def _step(self) -> tuple[EventBatch | None, bool]:
        """One read or one look around; returns (batch, whether to go on without sleeping)."""
        now = time.monotonic()
        if self._cur is None or self._fd is None:
            if now - self._last_scan < self.poll_interval:
                return None, False
            self._last_scan = now
            nxt = self._next_file()
            if nxt is None:
                return None, False
            self._open(nxt)
            return None, True
        cur, fd = self._cur, self._fd
        pos = cur.offset + len(self._pending)
        try:
            size = max(self.chunk, len(self._pending))  # a huge record: re-framed log(n) times
            data = await asyncio.to_thread(os.pread, fd, size, pos)
        except OSError as exc:
            self._error = f"{cur.path}: read error: {exc.strerror}"
            return None, False
        if data:
            if cur.head_len > 0 and not self._current_head_ok():
                # rewritten in place since our last read (a reused name, copytruncate): what
                # was just read belongs to the new content, not at our old position
                cur.size = max(cur.size, pos)
                return self._truncated(cur, cur.size), True
            self._last_growth = now
            return self._consume(data), True
        # At the end of the current file.
        if self._pending and now - self._last_growth >= self.idle_flush:
            batch = self._consume(b"", idle=True)
            if batch is not None:
                return batch, True
        if now - self._last_scan < self.poll_interval:
            return None, False
        self._last_scan = now
        st = os.fstat(fd)
        seen = max(cur.size, pos)
        cur.size, cur.mtime_ns = st.st_size, st.st_mtime_ns
        if st.st_size < pos or not self._current_head_ok():
            return self._truncated(cur, seen), True
        nxt = self._next_file()
        if nxt is None:
            return None, False
        # Another file has news: finish this one first (a last read, then its partial record).
        data = await asyncio.to_thread(os.pread, fd, self.chunk, pos)
        if data:
            return self._consume(data), True
        batch = self._consume(b"", final=True) if self._pending else None
        if self._pending:
            self.builder.stats.bad(f"{cur.path}: ends with an incomplete record")
            cur.offset += len(self._pending)
        self._rotations += 1
        self._open(nxt)
        return (batch if batch is not None else EventBatch([], self.checkpoint())), True

    def _consume(
        self, data: bytes, *, idle: bool = False, final: bool = False
    ) -> EventBatch | None:
        assert self._cur is not None
        buf = self._pending + data if self._pending else data
        parser = self._parser_for(buf)
        if parser is None:
            if len(buf) < 65536 and not final and not (idle and b"\n" in buf):
                self._pending = buf
                return None
            self._error = f"{self._cur.path}: not a PostgreSQL log in a known format"
            self.note(f"{self._error}; skipped {len(buf)} bytes")
            self.builder.stats.bad(self._error)
            consumed = len(buf)
            events: list[AccessEvent] = []
        else:
            records, consumed = parser.split(buf, final=final, idle=idle)
            events = parser.parse(records) if records else []
        self._pending = buf[consumed:]
        if consumed == 0:
            return None
        cur = self._cur
        self._recent = (
            (self._recent + buf[:consumed])[-_RECENT:]
            if consumed < _RECENT
            else (buf[consumed - _RECENT : consumed])
        )
        if len(self._head) < HEAD_BYTES:
            # buf starts at cur.offset; the head covers [0, len(head)) and len(head) >= offset
            # whenever offset < HEAD_BYTES (see _open)
            start = len(self._head) - cur.offset
            if 0 <= start < consumed:
                self._head += buf[start : min(consumed, HEAD_BYTES - cur.offset)]
                cur.head_len, cur.head_sha = len(self._head), _sha(self._head)
        cur.offset += consumed
        cur.tail_len, cur.tail_sha = len(self._recent), _sha(self._recent)
        if events:
            self._last_event_time = events[-1].time
        return EventBatch(events, self.checkpoint())

    def _next_file(self) -> _File | None:
        """The oldest file, other than the current one, with unread data."""
        candidates: list[_File] = []
        present: set[tuple[int, int]] = set()
        for f in self._scan():
            present.add(f.key)
            known = self._known.get(f.key)
            if known is self._cur and self._cur is not None:
                continue
            if known is not None:
                changed = (f.size, f.mtime_ns) != (known.size, known.mtime_ns)
                known.path, known.size, known.mtime_ns = f.path, f.size, f.mtime_ns
                if known.shadow and f.size > known.offset:
                    # taken for a copy, but copies do not grow: a log of its own after all
                    known.restart()
                    self._fill_head(known)
                    self._remember(known)
                elif changed and (f.size < known.offset or not self._same_head(known)):
                    # the name was reused and truncated in place (log_truncate_on_rotation)
                    known.restart()
                    self._fill_head(known)
                    self._remember(known)
                elif known.offset == 0 and known.head_len < min(f.size, HEAD_BYTES):
                    # nothing read of it yet, and it has grown since we looked: how it starts now
                    # is what a copytruncate copy of it would start with
                    known.head_len = -1
                    self._fill_head(known)
                f = known
            else:
                if not self._fill_head(f):
                    continue
                if self._looks_like_copy(f):
                    f.offset, f.shadow = f.size, True  # its bytes come from the original
                self._remember(f)
            if f.size > f.offset:
                candidates.append(f)
        for key in [k for k, v in self._known.items() if k not in present and v is not self._cur]:
            del self._known[key]
        if not candidates:
            return None
        chosen = min(candidates, key=self._age)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "next file %s of %s",
                chosen.path,
                [(c.path, c.offset, c.size, self._age(c)) for c in candidates],
            )
        return chosen

    def _age(self, f: _File) -> tuple[int, int, str, int]:
        """Sort key, oldest first. File times are only as fine as the kernel tick, so ties are
        broken by name (a rotated sibling is older than the file the pattern names), then by the
        first log timestamp in the file, then by order of discovery."""
        sibling = 0 if f.path != self.pattern and not fnmatch.fnmatch(f.path, self.pattern) else 1
        return (f.mtime_ns, sibling, _first_timestamp(f.path), f.seq)

    def _truncated(self, cur: _File, seen: int) -> EventBatch:
        """The current file shrank or was rewritten in place: copytruncate or a reused name.

        `seen` is the largest size we knew it to have: bytes up to there that neither we nor its
        copy hold are counted as lost.
        """
        self._rotations += 1
        copy = self._find_copy(cur)
        _log.debug("%s truncated at %d (seen %d); copy %s", cur.path, cur.offset, seen, copy)
        fresh = _File(cur.dev, cur.ino, cur.path, 0, -1, "", 0, 0)
        self._fill_head(fresh)
        self._remember(fresh)
        if copy is not None:
            pending = self._pending
            self.note(f"{cur.path}: truncated; reading the rest from its copy {copy.path}")
            if seen > copy.size:
                self._lost_bytes += seen - copy.size
            copy.offset = cur.offset
            self._cur = None
            self._open(copy)
            self._pending = pending
        else:
            read_to = cur.offset + len(self._pending)
            self._lost_bytes += max(seen - read_to, 0)
            if self._pending:
                self._lost_bytes += len(self._pending)
                self.note(
                    f"{cur.path}: truncated before its last record was complete; "
                    f"{len(self._pending)} bytes lost"
                )
            # Its new content is the newest there is: other files with unread data come first.
            self._close()
            self._cur = None
            self._pending = b""
            self._recent = b""
            self._last_scan = 0.0
        return EventBatch([], self.checkpoint())

    def _find_copy(self, cur: _File) -> _File | None:
        """A file beside `cur` holding what `cur` held before it was truncated."""
        directory = os.path.dirname(cur.path) or "."
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return None
        best: _File | None = None
        for name in names:
            path = os.path.join(directory, name)
            st = _stat(path)
            if st is None or (st.st_dev, st.st_ino) == cur.key or path.endswith(".gz"):
                continue
            if not self._is_copy_of(cur, path, st.st_size):
                continue
            if best is None or st.st_mtime_ns > best.mtime_ns:
                best = _File(st.st_dev, st.st_ino, path, 0, -1, "", st.st_size, st.st_mtime_ns)
        if best is not None:
            self._fill_head(best)
        return best
