"""`tablewatch replay`: audit logs in, JSON lines out (DESIGN.md, CLI contract)."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

import msgspec

from collectors.events import EventBuilder, ParseStats
from collectors.logfile import LogFileError, detect_format, read_events
from core.events import AccessEvent, EventKind, IsoFormatter
from core.tables import TableName, WatchedTables
from tablewatch.safetext import safe

EXIT_OK = 0
EXIT_USAGE = 2


@dataclass
class ReplayOptions:
    files: list[Path]
    tables: list[TableName]
    fmt: str = "auto"
    log_line_prefix: str = "%m [%p] %q%u@%d %r %a "
    events: bool = False
    summary: bool = False


@dataclass
class _Principal:
    audit: int = 0
    denied: int = 0
    rows: int = 0
    rows_known: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    first: str = ""
    last: str = ""


def run_replay(opts: ReplayOptions, out: BinaryIO, err: TextIO) -> int:
    """Replay the files; returns the exit code."""
    formats: list[tuple[Path, str]] = []
    for path in opts.files:
        try:
            formats.append((path, detect_format(path, opts.fmt, opts.log_line_prefix)))
        except LogFileError as exc:
            print(f"tablewatch replay: {exc}", file=err)
            return EXIT_USAGE
    stats = ParseStats()
    builder = EventBuilder(WatchedTables(opts.tables), stats)
    write_events = EventWriter(out).write
    principals: dict[tuple[str, str, str], _Principal] = {}
    status = EXIT_OK
    for path, fmt in formats:
        try:
            for batch in read_events(path, fmt, builder, opts.log_line_prefix):
                if opts.summary:
                    _tally(principals, batch)
                else:
                    write_events(batch)
        except LogFileError as exc:
            print(f"tablewatch replay: {exc}", file=err)
            status = EXIT_USAGE
    out.flush()
    if opts.summary:
        _print_summary(principals, stats, opts, sys.stdout)
    if stats.malformed or stats.forged:
        _report_problems(stats, err)
    return status


class _EventLine(msgspec.Struct, rename={"class_": "class"}):
    """One line of `replay --events`: the fields of DESIGN.md, in its order."""

    time: str
    user: str
    database: str
    client_addr: str
    application_name: str
    session_id: str
    audit_type: str | None
    statement_id: int | None
    substatement_id: int | None
    class_: str
    command: str
    object_type: str
    object_name: str
    statement: str | None
    parameters: tuple[str, ...] | None
    rows: int | None


class EventWriter:
    """Writes audit events as JSON lines (permission-denied events are not audit records)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._encode = msgspec.json.Encoder().encode
        self._iso = IsoFormatter()

    def write(self, events: list[AccessEvent]) -> None:
        encode, iso, line = self._encode, self._iso.format, _EventLine
        lines = [
            encode(
                line(
                    iso(e.time_us),
                    e.user,
                    e.database,
                    e.client_addr,
                    e.application_name,
                    e.session_id,
                    e.audit_type,
                    e.statement_id,
                    e.substatement_id,
                    e.class_,
                    e.command,
                    e.object_type,
                    e.object_name,
                    e.statement,
                    e.parameters,
                    e.rows,
                )
            )
            for e in events
            if e.kind is EventKind.AUDIT
        ]
        if lines:
            lines.append(b"")
            self._out.write(b"\n".join(lines))


def _tally(principals: dict[tuple[str, str, str], _Principal], batch: list[AccessEvent]) -> None:
    for e in batch:
        p = principals.setdefault((e.user, e.client_addr, e.application_name), _Principal())
        when = e.time.isoformat(timespec="seconds")
        p.first = p.first or when
        p.last = when
        if e.kind is EventKind.DENIED:
            p.denied += 1
            continue
        p.audit += 1
        p.commands[e.command] += 1
        if e.rows is not None:
            p.rows += e.rows
            p.rows_known += 1


def _print_summary(
    principals: dict[tuple[str, str, str], _Principal],
    stats: ParseStats,
    opts: ReplayOptions,
    out: TextIO,
) -> None:
    tables = ", ".join(str(t) for t in opts.tables)
    print(f"{stats.records} log records read, {stats.events} about {tables}", file=out)
    if not principals:
        print("nobody read the watched tables", file=out)
        return
    print(f"{len(principals)} readers, busiest first:", file=out)
    ranked = sorted(principals.items(), key=lambda kv: -(kv[1].audit + kv[1].denied))
    for (user, addr, app), p in ranked:
        commands = ", ".join(f"{c} x{n}" for c, n in p.commands.most_common(4))
        rows = f", {p.rows} rows returned" if p.rows_known else ""
        denied = f", {p.denied} DENIED" if p.denied else ""
        print(
            f"  {safe(user, 32)} from {safe(addr or '?', 40)} ({safe(app or 'no app', 32)}): "
            f"{p.audit} reads{rows}{denied} [{commands}] {p.first} .. {p.last}",
            file=out,
        )


def _report_problems(stats: ParseStats, err: TextIO) -> None:
    if stats.malformed:
        first = f"; first: {safe(stats.samples[0], 200)}" if stats.samples else ""
        print(f"tablewatch replay: {stats.malformed} malformed records skipped{first}", file=err)
    if stats.forged:
        print(
            f"tablewatch replay: {stats.forged} AUDIT messages not written by pgaudit skipped "
            "(raised from a function: forgery attempts)",
            file=err,
        )
