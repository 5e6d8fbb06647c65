"""Write PostgreSQL 15 server-log records (csvlog, jsonlog, stderr) the way the server does.

The tests feed these to the parsers, so they follow the server's own writers: csvlog quotes every
text column it may quote and doubles the quotes inside, jsonlog is one compact UTF-8 object per line
with empty keys left out, stderr starts every line with `log_line_prefix` and continues a multi-line
message on lines that start with a tab.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.events import EventBuilder, ParseStats
from collectors.logformats import LogFormat, make_format
from collectors.pgaudit import parse_audit_message
from core.events import AccessEvent, EventKind, us_from_utc
from core.tables import TableName, WatchedTables

CORPUS_PLACES = (
    Path(__file__).resolve().parents[2].parent / "shared" / "corpus",  # beside the clone (CI)
    Path(os.environ.get("PGAUDIT_CORPUS", "/work/shared/corpus")),
)
CORPUS = next((p for p in CORPUS_PLACES if p.is_dir()), CORPUS_PLACES[0])
STDERR_PREFIX = "%m [%p] %q%u@%d %r %a "


@functools.cache
def _corpus() -> tuple[str, ...] | None:
    path = CORPUS / "pgaudit-regress-audit.jsonl"
    if not path.is_file():
        return None
    lines = path.read_text("utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def corpus_messages() -> list[str]:
    """The 415 pgaudit messages of the shared corpus; skips the test when the corpus is absent."""
    messages = _corpus()
    if messages is None:
        pytest.skip(f"pgaudit corpus not found in {CORPUS}")
    return list(messages)


@dataclass(frozen=True)
class Origin:
    """Who logged a record and when: what the csvlog columns and the log line prefix carry.

    `user` empty means a background process (checkpointer...): no user, database or client.
    """

    time: str = "2026-11-29 03:41:04.994 UTC"
    user: str = "reader"
    database: str = "postgres"
    pid: int = 7730
    host: str = "127.0.0.1"
    port: int | None = 53552
    """None for a Unix-socket client (`[local]`) or a background process."""
    session_id: str = "6b0b9ed0.1e32"
    line_num: int = 1
    command_tag: str = "EXECUTE"
    session_start: str = "2026-11-29 03:41:04 UTC"
    application_name: str = "psql"
    backend_type: str = "client backend"

    def at(self, time: str) -> Origin:
        """The same origin at another time."""
        return replace(self, time=time)


READER = Origin()
CHECKPOINTER = Origin(
    user="",
    database="",
    pid=7701,
    host="",
    port=None,
    session_id="6b0b9e80.1e15",
    command_tag="",
    application_name="",
    backend_type="checkpointer",
)


def pgaudit_field(value: str) -> str:
    """A pgaudit CSV field: quoted (quotes doubled) only when it holds `"`, `,`, CR or LF."""
    if any(c in value for c in '",\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def audit_message(
    statement: str = "SELECT * FROM crm.client_list",
    parameters: tuple[str, ...] | str = "<none>",
    *,
    audit_type: str = "OBJECT",
    statement_id: int = 1,
    substatement_id: int = 1,
    class_: str = "READ",
    command: str = "SELECT",
    object_type: str = "TABLE",
    object_name: str = "crm.client_list",
    rows: int | None = None,
) -> str:
    """An `AUDIT: ` message as pgaudit writes it: parameter values quoted one by one, then the
    list quoted again as one field; a token such as `<none>` is given as a plain string."""
    if isinstance(parameters, str):
        parameter_field = parameters
    else:
        parameter_field = pgaudit_field(",".join(pgaudit_field(v) for v in parameters))
    fields = [
        audit_type,
        str(statement_id),
        str(substatement_id),
        class_,
        command,
        object_type,
        pgaudit_field(object_name),
        pgaudit_field(statement),
        parameter_field,
    ]
    if rows is not None:
        fields.append(str(rows))
    return "AUDIT: " + ",".join(fields)


def csv_literal(text: str) -> str:
    """A csvlog text column: always quoted, inner quotes doubled (appendCSVLiteral)."""
    return '"' + text.replace('"', '""') + '"'


def csvlog(
    message: str,
    origin: Origin = READER,
    *,
    severity: str = "LOG",
    state: str = "00000",
    context: str = "",
    query: str = "",
) -> bytes:
    """One csvlog record of PostgreSQL 15 (26 columns), newline-terminated."""

    def lit(text: str) -> str:
        return csv_literal(text) if text else ""

    client = f"{origin.host}:{origin.port}" if origin.port is not None else origin.host
    columns = [
        origin.time,
        lit(origin.user),
        lit(origin.database),
        str(origin.pid),
        lit(client),
        origin.session_id,
        str(origin.line_num),
        lit(origin.command_tag),
        origin.session_start,
        "3/14" if origin.user else "",
        "0",
        severity,
        state,
        csv_literal(message),
        "",  # detail
        "",  # hint
        "",  # internal query
        "",  # internal query position
        lit(context),
        lit(query),
        "",  # query position
        "",  # location
        lit(origin.application_name),
        csv_literal(origin.backend_type),
        "",  # leader pid
        "0",  # query id
    ]
    assert len(columns) == 26
    return (",".join(columns) + "\n").encode()


def jsonlog(
    message: str,
    origin: Origin = READER,
    *,
    severity: str = "LOG",
    state: str = "",
    context: str = "",
    statement: str = "",
) -> bytes:
    """One jsonlog record (compact, UTF-8, empty keys omitted as PostgreSQL does), newline-ended."""
    record: dict[str, object] = {"timestamp": origin.time}
    if origin.user:
        record |= {"user": origin.user, "dbname": origin.database}
    record["pid"] = origin.pid
    if origin.host:
        record["remote_host"] = origin.host
    if origin.port is not None:
        record["remote_port"] = origin.port
    record |= {"session_id": origin.session_id, "line_num": origin.line_num}
    if origin.command_tag:
        record["ps"] = origin.command_tag
    record["session_start"] = origin.session_start
    if origin.user:
        record["vxid"] = "3/14"
    record |= {"txid": 0, "error_severity": severity}
    if state:
        record["state_code"] = state
    record["message"] = message
    if context:
        record["context"] = context
    if statement:
        record["statement"] = statement
    if origin.application_name:
        record["application_name"] = origin.application_name
    record |= {"backend_type": origin.backend_type, "query_id": 0}
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode()


def stderr_prefix(origin: Origin) -> str:
    """`log_line_prefix = '%m [%p] %q%u@%d %r %a '` expanded; after %q only for client sessions."""
    head = f"{origin.time} [{origin.pid}] "
    if not origin.user:
        return head
    client = f"{origin.host}({origin.port})" if origin.port is not None else origin.host
    return head + f"{origin.user}@{origin.database} {client} {origin.application_name} "


def stderr(
    message: str,
    origin: Origin = READER,
    *,
    severity: str = "LOG",
    secondary: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A stderr message: prefix, `SEVERITY:  `, text with each newline followed by a tab; then
    each (DETAIL|CONTEXT|STATEMENT..., text) line with the same prefix."""
    prefix = stderr_prefix(origin)
    parts = [(severity, message), *secondary]
    lines = [f"{prefix}{sev}:  {text.replace(chr(10), chr(10) + chr(9))}\n" for sev, text in parts]
    return "".join(lines).encode()


FORMATS = {"csvlog": csvlog, "jsonlog": jsonlog, "stderr": stderr}


def origin_time(origin: Origin) -> datetime:
    """The aware UTC datetime of a UTC `origin.time`."""
    assert origin.time.endswith(" UTC")
    return datetime.strptime(origin.time, "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=UTC)


def expected_event(
    message: str, origin: Origin = READER, *, session_id: bool = True
) -> AccessEvent:
    """The event a parser should make of a pgaudit `message` logged by `origin`."""
    fields = parse_audit_message(message)
    return AccessEvent(
        us_from_utc(origin_time(origin)),
        EventKind.AUDIT,
        origin.user,
        origin.database,
        origin.host,
        origin.application_name,
        origin.session_id if session_id else "",
        *fields,
        origin.pid,
    )


def make_parser(fmt: str, tables: Iterable[str] = (), prefix: str = STDERR_PREFIX) -> LogFormat:
    """A fresh parser for `fmt` keeping events about `tables` (about every relation when none)."""
    watched = WatchedTables(TableName.parse(t) for t in tables)
    return make_format(fmt, EventBuilder(watched), prefix)


def parse_log(
    fmt: str, data: bytes, tables: Iterable[str] = (), prefix: str = STDERR_PREFIX
) -> tuple[list[AccessEvent], ParseStats]:
    """The events of a whole log given in one piece (final=True); checks it was all consumed."""
    parser = make_parser(fmt, tables, prefix)
    records, consumed = parser.split(data, final=True)
    assert consumed == len(data)
    return parser.parse(records), parser.stats


def feed(parser: LogFormat, pieces: Iterable[bytes], *, idle: bool = False) -> list[AccessEvent]:
    """Feed pieces as `collectors.logfile.read_events` does: carry `buf[consumed:]` over to the
    next piece, then an empty final call. `idle` marks every non-final call as after a pause."""
    events: list[AccessEvent] = []
    pending = b""
    for piece in [*pieces, b""]:
        final = not piece
        buf = pending + piece
        records, consumed = parser.split(buf, final=final, idle=idle and not final)
        events += parser.parse(records)
        pending = buf[consumed:]
    assert pending == b"", f"left unconsumed after final: {pending[:80]!r}"
    return events
