"""A stand-in for PostgreSQL's logging collector, for tail tests: csvlog records with known ids,
written and rotated the three ways real deployments rotate."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

WATCHED = "crm.client_list"
BASE_TIME = datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)
"""Record n is stamped BASE_TIME + n ms: time only moves forward, as in a real log."""


def csv_record(n: int, *, multiline: bool = False) -> bytes:
    """One csvlog pgaudit record whose statement_id (and parameter) is `n`."""
    statement = "SELECT * FROM crm.client_list WHERE id = $1"
    if multiline:
        statement = "SELECT id,\n       name\n  FROM crm.client_list\n WHERE id = $1"
    inner = f'AUDIT: OBJECT,{n},1,READ,SELECT,TABLE,{WATCHED},"{statement}",{n}'
    message = inner.replace('"', '""')
    when = BASE_TIME + timedelta(milliseconds=n)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"
    return (
        f'{stamp},"app","crm",7730,"10.0.0.5:53552",'
        f'6b0b9ed0.1e32,{n},"SELECT",2026-11-29 03:41:04 UTC,3/14,0,LOG,00000,"{message}",'
        ',,,,,,,,"app","client backend",,0\n'
    ).encode()


NOISE = (
    b"2026-11-29 03:41:04.994 UTC,,,7701,,6b0b9ed0.1e15,1,,2026-11-29 03:41:04 UTC,,0,LOG,00000,"
    b'"checkpoint starting: time",,,,,,,,,"","checkpointer",,0\n'
)


class LogWriter:
    """Appends records to `directory` and rotates like logrotate or PostgreSQL would.

    mode: "rename" (postgresql.csv renamed to postgresql.csv.N, a new file created),
    "copytruncate" (copied to postgresql.csv.N, then truncated in place), or "wrap"
    (PostgreSQL's own rotation over postgresql-0..K-1.csv with log_truncate_on_rotation).
    """

    def __init__(self, directory: Path, mode: str, wrap_names: int = 4) -> None:
        self.dir = directory
        self.mode = mode
        self.wrap_names = wrap_names
        self.rotations = 0
        self.fd = -1
        self.path = self._path_for(0)
        self._open(truncate=True)
        self.ids_in_file: dict[str, list[int]] = {str(self.path): []}

    @property
    def pattern(self) -> str:
        if self.mode == "wrap":
            return str(self.dir / "postgresql-*.csv")
        return str(self.dir / "postgresql.csv")

    def _path_for(self, rotation: int) -> Path:
        if self.mode == "wrap":
            return self.dir / f"postgresql-{rotation % self.wrap_names}.csv"
        return self.dir / "postgresql.csv"

    def _open(self, *, truncate: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.path, flags, 0o644)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def write_record(self, n: int, *, multiline: bool = False) -> None:
        self.write(csv_record(n, multiline=multiline))
        self.ids_in_file.setdefault(str(self.path), []).append(n)

    def next_path(self) -> Path:
        """The file the next rotation will write to."""
        return self._path_for(self.rotations + 1)

    def rotate(self) -> None:
        """Rotate once, the writer's way (copytruncate: see copy() and truncate())."""
        self.rotations += 1
        if self.mode == "rename":
            os.rename(self.path, self.dir / f"postgresql.csv.{self.rotations}")
            self._open(truncate=True)
        elif self.mode == "copytruncate":
            self.copy()
            self.truncate()
        else:
            self.path = self._path_for(self.rotations)
            self.ids_in_file[str(self.path)] = []
            self._open(truncate=True)

    def copy(self) -> None:
        shutil.copyfile(self.path, self.dir / f"postgresql.csv.{self.rotations}")

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
