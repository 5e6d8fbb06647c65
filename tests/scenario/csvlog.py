"""The record writers: quoting exactly as the server writes it, backends and the csvlog file."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from tests.scenario.constants import WATCHED
from tests.scenario.manifest import Principal

# ---------------------------------------------------------------------------------------------
# Quoting, exactly as the server writes it
# ---------------------------------------------------------------------------------------------


def lit(s: str) -> str:
    """csvlog.c appendCSVLiteral: always quoted, inner quotes doubled."""
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
    """A statement with its pgaudit-quoted text and query id, computed once."""

    __slots__ = ("text", "quoted", "qid", "tag", "cls", "command", "objects")

    def __init__(
        self,
        text: str,
        objects: tuple[str, ...] = (WATCHED,),
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


# ---------------------------------------------------------------------------------------------
# Backends and the log
# ---------------------------------------------------------------------------------------------


class Session:
    """One backend: the constant parts of its csvlog rows and its counters."""

    __slots__ = (
        "principal",
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
        "session_read",
        "object_audit",
        "once",
        "misc",
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
        self.principal = Principal(user, host, app)
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
        self.tail = f",{lit(app)},{lit(btype)},,"
        self.line = 0
        self.backend_id = rng.randint(3, 180)
        self.lxid = rng.randint(1, 9000)
        self.stmt_id = 0
        self.session_read = False
        """Session audit of reads (pgaudit.log includes read)."""
        self.object_audit = True
        """Object audit in this backend (false after `SET pgaudit.role = ''`)."""
        self.once = False
        """pgaudit.log_statement_once."""
        self.misc = False
        """Session audit of role, ddl and misc statements (the DBA)."""

    def vxid(self) -> str:
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
    """csvlog's `log_time` of an event time in ms, the part up to the second cached."""

    def __init__(self) -> None:
        self._sec = -1
        self._sec_str = ""

    def __call__(self, ms_since_epoch: int) -> str:
        sec, ms = divmod(ms_since_epoch, 1000)
        if sec != self._sec:
            self._sec = sec
            self._sec_str = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{self._sec_str}.{ms:03d} UTC"


def row(
    stamp: str,
    s: Any,
    tag: str,
    msg: str,
    *,
    sev: str = "LOG",
    state: str = "00000",
    detail: str | None = None,
    context: str | None = None,
    query: str | None = None,
    vxid: str = "",
    qid: str = "0",
) -> str:
    """One csvlog row (26 columns) of backend `s` (its `head`, `line`, `start_str`, `tail`),
    which counts the line."""
    s.line += 1
    d = "" if detail is None else lit(detail)
    c = "" if context is None else lit(context)
    q = "" if query is None else lit(query)
    return (
        f"{stamp}{s.head}{s.line},{tag},{s.start_str},{vxid},0,{sev},{state},"
        f"{lit(msg)},{d},,,,{c},{q},,{s.tail}{qid}\n"
    )


class Log:
    """The csvlog writer: one row per record, buffered; counts what it wrote."""

    def __init__(self, out: TextIO, log_rows: bool) -> None:
        self.out = out
        self.log_rows = log_rows
        self.buf: list[str] = []
        self.records = 0
        self.audits = 0
        self.t = 0
        """The current event time (ms); the scheduler sets it."""
        self._stamps = Stamps()

    def stamp(self) -> str:
        return self._stamps(self.t)

    def emit(
        self,
        s: Session,
        tag: str,
        msg: str,
        *,
        sev: str = "LOG",
        state: str = "00000",
        detail: str | None = None,
        context: str | None = None,
        query: str | None = None,
        vxid: str = "",
        qid: str = "0",
    ) -> None:
        self.buf.append(
            row(
                self.stamp(),
                s,
                tag,
                msg,
                sev=sev,
                state=state,
                detail=detail,
                context=context,
                query=query,
                vxid=vxid,
                qid=qid,
            )
        )
        self.records += 1
        if len(self.buf) >= 8192:
            self.flush()

    def flush(self) -> None:
        self.out.write("".join(self.buf))
        self.buf.clear()
