"""`tablewatch replay`: audit logs in, JSON lines out (DESIGN.md, CLI contract)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import msgspec

from collectors.events import EventBuilder, ParseStats
from collectors.logfile import LogFileError, detect_format, read_events
from core.baselines import Baselines, StateError
from core.engine import Engine, EngineConfig
from core.events import AccessEvent, IsoFormatter
from core.findings import Finding
from core.safetext import safe
from core.tables import TableName, WatchedTables
from tablewatch.events_out import EventWriter
from tablewatch.parallel import events_parallel, replay_parallel, worth_it
from tablewatch.summary import Readers

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
    engine: EngineConfig | None = None
    """For findings (neither events nor summary): the engine's configuration."""
    state_dir: Path | None = None
    """For findings: load baselines from here first, save them back after."""


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
    findings = not opts.events and not opts.summary
    if findings:
        return _replay_findings(opts, formats, stats, out, err)
    builder = EventBuilder(WatchedTables(opts.tables), stats)
    write_events = EventWriter(out).write
    readers = Readers()
    status = EXIT_OK
    for path, fmt in formats:
        try:
            start = 0
            if opts.events and worth_it(path, fmt):
                out.flush()
                resume = replay_parallel(path, opts.tables, out, stats)
                if resume is None:
                    continue
                start = resume
            for batch in read_events(path, fmt, builder, opts.log_line_prefix, start):
                if opts.summary:
                    readers.add(batch)
                else:
                    write_events(batch)
        except LogFileError as exc:
            print(f"tablewatch replay: {exc}", file=err)
            status = EXIT_USAGE
    out.flush()
    if opts.summary:
        readers.print(stats, opts.tables, sys.stdout)
    if stats.malformed or stats.forged:
        _report_problems(stats, err)
    return status


def _replay_findings(
    opts: ReplayOptions,
    formats: list[tuple[Path, str]],
    stats: ParseStats,
    out: BinaryIO,
    err: TextIO,
) -> int:
    """Feed the events to the engine (event time as the clock); print findings in time order."""
    config = opts.engine or EngineConfig(tuple(opts.tables))
    try:
        baselines = Baselines.load(opts.state_dir) if opts.state_dir is not None else None
    except StateError as exc:
        print(f"tablewatch replay: {exc}", file=err)
        return EXIT_USAGE
    engine = Engine(config, baselines)
    builder = EventBuilder(WatchedTables(opts.tables), stats, control=True)
    found: list[Finding] = []
    status = EXIT_OK
    for path, fmt in formats:
        try:
            found.extend(feed(engine, path, fmt, builder, opts.log_line_prefix))
        except LogFileError as exc:
            print(f"tablewatch replay: {exc}", file=err)
            status = EXIT_USAGE
    # findings are stamped with their record's time; records of concurrent sessions reach the
    # log a little out of order, so the output is sorted (stable: ties keep their order)
    found.sort(key=lambda f: f.time_us)
    iso = IsoFormatter()
    encode = msgspec.json.Encoder().encode_lines
    if found:
        out.write(encode([f.contract(iso) for f in found]))
    out.flush()
    if opts.state_dir is not None:
        try:
            engine.save(opts.state_dir)
        except OSError as exc:
            print(f"tablewatch replay: cannot save baselines: {exc}", file=err)
            status = EXIT_USAGE
    if stats.malformed or stats.forged:
        _report_problems(stats, err)
    for table in config.tables:
        if engine.table_rows(str(table)) is None:
            print(
                f"tablewatch replay: the size of {safe(str(table), 80)} is unknown: only "
                f"whole-table shapes could be judged; give --table {safe(str(table), 80)}=ROWS "
                "(or rows in [[tables]])",
                file=err,
            )
    return status


def feed(
    engine: Engine, path: Path, fmt: str, builder: EventBuilder, log_line_prefix: str
) -> list[Finding]:
    """The findings of one log file fed to `engine` in file order; a large csvlog is parsed on
    every core. `builder` (with control records) parses what the fast path leaves.

    Raises:
        LogFileError: the file cannot be read to its end.
    """
    found: list[Finding] = []

    def consume(events: list[AccessEvent]) -> None:
        found.extend(engine.process(events))

    start = 0
    if worth_it(path, fmt):
        tables = list(engine.config.tables)
        resume = events_parallel(path, tables, builder.stats, consume)
        if resume is None:
            return found
        start = resume
    for batch in read_events(path, fmt, builder, log_line_prefix, start):
        consume(batch)
    return found


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
