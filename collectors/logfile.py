"""Reading whole log files for replay: plain or gzip, format sniffed, parsed in large chunks."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from collectors.events import EventBuilder
from collectors.logformats import CsvLog, LogFormat, csv_boundary, make_format, sniff
from collectors.prefix import DEFAULT_PREFIX
from core.events import AccessEvent

CHUNK = 64 * 1024
"""Read size. Small on purpose: parsing a chunk's records while they are still in the CPU cache
is twice as fast as parsing megabytes of them at once."""
_SNIFF_BYTES = 64 * 1024


class LogFileError(Exception):
    """A file that cannot be read as a PostgreSQL log; the message is one line."""


def open_log(path: Path) -> BinaryIO:
    """Open a log file for reading, gunzipping it on the fly if it is gzip.

    Raises:
        LogFileError: missing, a directory, unreadable.
    """
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise LogFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LogFileError(f"{path}: is a directory, expected a log file") from None
    except PermissionError:
        raise LogFileError(f"{path}: permission denied") from None
    except OSError as exc:
        raise LogFileError(f"{path}: cannot open: {exc.strerror}") from None
    magic = raw.read(2)
    if magic == b"\x1f\x8b":
        raw.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic (False when it cannot be read)."""
    try:
        with path.open("rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def read_block(stream: BinaryIO, size: int, path: Path) -> bytes:
    """Up to `size` bytes.

    Raises:
        LogFileError: a damaged gzip stream or a read error.
    """
    try:
        return stream.read(size)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LogFileError(f"{path}: damaged or truncated gzip file: {exc}") from None
    except OSError as exc:
        raise LogFileError(f"{path}: read error: {exc.strerror or exc}") from None


def detect_format(path: Path, fmt: str, log_line_prefix: str = DEFAULT_PREFIX) -> str:
    """The format to read `path` with: `fmt` itself, or what the file's head looks like for auto.

    Raises:
        LogFileError: missing, unreadable, binary, or (for auto) no known log format.
    """
    with open_log(path) as stream:
        head = read_block(stream, _SNIFF_BYTES, path)
    if b"\x00" in head[:8192]:
        raise LogFileError(f"{path}: binary data, not a PostgreSQL server log")
    if fmt != "auto":
        return fmt
    if not head.strip():
        return "csvlog" if path.name.endswith((".csv", ".csv.gz")) else "stderr"
    found = sniff(head, log_line_prefix)
    if found is None:
        raise LogFileError(
            f"{path}: not a PostgreSQL server log (no csvlog, jsonlog or stderr line with "
            f"log_line_prefix {log_line_prefix!r} in its first lines; see --format and "
            "--log-line-prefix)"
        )
    return found


def read_events(
    path: Path,
    fmt: str,
    builder: EventBuilder,
    log_line_prefix: str = DEFAULT_PREFIX,
    start: int = 0,
) -> Iterator[list[AccessEvent]]:
    """The events of a whole file (from byte `start`, a record boundary), a batch per chunk.

    Raises:
        LogFileError: the file cannot be read to its end (events before the damage are yielded).
    """
    parser: LogFormat = make_format(fmt, builder, log_line_prefix)
    fast = parser if isinstance(parser, CsvLog) else None
    with open_log(path) as stream:
        if start:
            stream.seek(start)
        pending = b""
        while True:
            # a record larger than a chunk: read more at a time, so that it is re-framed only
            # a logarithmic number of times
            chunk = read_block(stream, max(CHUNK, len(pending)), path)
            final = not chunk
            buf = pending + chunk if pending else chunk
            if fast is not None and not final:
                end = csv_boundary(buf)
                events = fast.parse_text(buf[:end].decode("utf-8", "replace")) if end else None
                if events is not None:
                    if events:
                        yield events
                    pending = buf[end:]
                    continue
            records, consumed = parser.split(buf, final=final)
            if records:
                yield parser.parse(records)
            pending = buf[consumed:]
            if final:
                return
