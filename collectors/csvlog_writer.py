"""Writing PostgreSQL 15 csvlog records the way the server does, pgaudit messages included.

The quoting of csvlog.c (every text column quoted, inner quotes doubled) and of pgaudit (a field
quoted only when it must be, a bound statement's parameters quoted one by one and then as a
list), the constant parts of a backend's rows, and a buffered writer of 26-column rows.
The demo workload (collectors.demo) and the test scenario generator (tests/scenario) write with it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, TextIO, TypedDict, Unpack

__all__ = [
    "Backend",
    "Columns",
    "Log",
    "Pids",
    "RowSource",
    "Stamps",
    "Statement",
    "audit_csv",
    "audit_params",
    "lit",
    "query_id",
    "row",
]


def lit(s: str) -> str:
    """csvlog.c appendCSVLiteral: always quoted, inner quotes doubled.

    >>> lit('a"b')
    '"a""b"'
    """
    return '"' + s.replace('"', '""') + '"'


def audit_csv(s: str) -> str:
    """pgaudit append_valid_csv: quoted only when it holds a comma, quote, CR or LF.

    >>> audit_csv("a"), audit_csv("1,2"), audit_csv("a'b")
    ('a', '"1,2"', "a'b")
    """
    if "," in s or '"' in s or "\n" in s or "\r" in s:
        return '"' + s.replace('"', '""') + '"'
    return s


def audit_params(values: Sequence[str | None]) -> str:
    """pgaudit's PARAMETER field of a bound statement (log_parameter = on); a NULL (None) is
    skipped: nothing between its commas.

    >>> audit_params([]), audit_params(["7"]), audit_params(["1000", "5000"])
    ('<none>', '7', '"1000,5000"')
    >>> audit_params(["1", None])
    '"1,"'
    """
    if not values:
        return "<none>"
    return audit_csv(",".join("" if v is None else audit_csv(v) for v in values))


def query_id(text: str) -> str:
    """A stable signed 64-bit stand-in for the query jumble hash."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big", signed=True))


class Statement:
    """A statement with its pgaudit-quoted text and query id, computed once.

    `objects`: the relations it reads, in range-table order (pgaudit writes one record each);
    `tag`: the csvlog command_tag column (`BIND` for a driver's statement, `SELECT`, `COPY`...);
    `cls` and `command`: pgaudit's CLASS and COMMAND fields.
    """

    __slots__ = ("text", "quoted", "qid", "tag", "cls", "command", "objects")

    def __init__(
        self,
        text: str,
        objects: tuple[str, ...],
        tag: str = "BIND",
        cls: str = "READ",
        command: str = "SELECT",
    ) -> None:
        self.text = text
        self.quoted = audit_csv(text)
        self.qid = query_id(text)
        self.tag = lit(tag)
        self.cls = cls
        self.command = command
        self.objects = objects


class Backend:
    """One server process: the constant parts of its csvlog rows and its counters.

    `host` empty: a background process (no client); `[local]`: a Unix-socket client.
    """

    __slots__ = (
        "user",
        "db",
        "host",
        "port",
        "app",
        "pid",
        "start_ms",
        "start_str",
        "head",
        "tail",
        "conn",
        "sid",
        "line",
        "backend_id",
        "lxid",
        "stmt_id",
    )

    def __init__(
        self,
        user: str,
        host: str,
        app: str,
        start_ms: int,
        pid: int,
        rng: random.Random,
        *,
        btype: str = "client backend",
        db: str = "crm",
    ) -> None:
        self.user, self.db, self.host, self.app, self.pid = user, db, host, app, pid
        self.port = rng.randint(32768, 60999)
        self.start_ms = start_ms
        self.start_str = datetime.fromtimestamp(start_ms // 1000, UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        sid = f"{start_ms // 1000:x}.{pid:x}"
        if not host:
            conn = ""
        elif host == "[local]":
            conn = lit(host)
        else:
            conn = f'"{host}:{self.port}"'
        self.conn, self.sid = conn, sid
        self.head = f",{lit(user) if user else ''},{lit(db) if db else ''},{pid},{conn},{sid},"
        """The columns from user_name to session_id."""
        self.tail = f",{lit(app)},{lit(btype)},,"
        """application_name, backend_type and leader_pid."""
        self.line = 0
        self.backend_id = rng.randint(3, 180)
        self.lxid = rng.randint(1, 9000)
        self.stmt_id = 0
        """pgaudit's STATEMENT_ID: counts the audited statements of the backend."""

    def vxid(self) -> str:
        """The virtual transaction id of its current transaction."""
        return f"{self.backend_id}/{self.lxid}"


class Pids:
    """Process ids as the postmaster hands them out: increasing, with gaps."""

    def __init__(self, rng: random.Random, first: int) -> None:
        self.rng = rng
        self.pid = first

    def __call__(self) -> int:
        self.pid += self.rng.randint(1, 29)
        if self.pid > 4_000_000:
            self.pid = 300
        return self.pid


class Stamps:
    """csvlog's `log_time` of an event time in ms, the part up to the second cached.

    >>> Stamps()(1_764_387_664_994)
    '2025-11-29 03:41:04.994 UTC'
    """

    def __init__(self) -> None:
        self._sec = -1
        self._sec_str = ""

    def __call__(self, ms_since_epoch: int) -> str:
        sec, ms = divmod(ms_since_epoch, 1000)
        if sec != self._sec:
            self._sec = sec
            self._sec_str = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{self._sec_str}.{ms:03d} UTC"


class Columns(TypedDict, total=False):
    """The columns of a row that vary from record to record (the rest are the backend's)."""

    sev: str
    """error_severity: LOG unless given."""
    state: str
    """sql_state_code: 00000 unless given."""
    detail: str | None
    context: str | None
    query: str | None
    vxid: str
    """virtual_transaction_id: empty unless given."""
    qid: str
    """query_id: 0 unless given."""


class RowSource(Protocol):
    """What a row takes from its process: a `Backend`, or anything with its row parts."""

    head: str
    line: int
    start_str: str
    tail: str


def row(stamp: str, s: RowSource, tag: str, msg: str, **columns: Unpack[Columns]) -> str:
    """One csvlog row (26 columns) of process `s` (its `head`, `line`, `start_str`, `tail`),
    which counts the line. `tag` is the command_tag column as written (quoted, or empty)."""
    s.line += 1
    detail, context, query = columns.get("detail"), columns.get("context"), columns.get("query")
    d = "" if detail is None else lit(detail)
    c = "" if context is None else lit(context)
    q = "" if query is None else lit(query)
    vxid, sev = columns.get("vxid", ""), columns.get("sev", "LOG")
    state, qid = columns.get("state", "00000"), columns.get("qid", "0")
    return (
        f"{stamp}{s.head}{s.line},{tag},{s.start_str},{vxid},0,{sev},{state},"
        f"{lit(msg)},{d},,,,{c},{q},,{s.tail}{qid}\n"
    )


class Log:
    """The csvlog writer: one row per record, buffered; counts what it wrote."""

    def __init__(self, out: TextIO, log_rows: bool) -> None:
        self.out = out
        self.log_rows = log_rows
        """pgaudit.log_rows: audit messages end with the row count."""
        self.buf: list[str] = []
        self.records = 0
        self.audits = 0
        self.t = 0
        """The current event time (ms); the scheduler sets it."""
        self._stamps = Stamps()

    def stamp(self) -> str:
        """The log_time column of the current event time."""
        return self._stamps(self.t)

    def emit(self, s: RowSource, tag: str, msg: str, **columns: Unpack[Columns]) -> None:
        """Buffer one record of process `s` at the current event time."""
        self.buf.append(row(self._stamps(self.t), s, tag, msg, **columns))
        self.records += 1
        if len(self.buf) >= 8192:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records to `out`."""
        self.out.write("".join(self.buf))
        self.buf.clear()
