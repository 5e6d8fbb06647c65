"""PostgreSQL server log formats: frame raw bytes into records, parse the audit ones into events.

Each format offers `split(buf, final=..., idle=...)`, which frames complete records cheaply and
keeps only candidates (records that may be pgaudit or permission-denied ones: a substring test on
bytes), and `parse(candidates)`, which turns them into `AccessEvent`s. The split reports how many
bytes it consumed, so a tail can checkpoint exactly at a record boundary.

- csvlog: a record ends at a newline outside quotes. A damaged record (a line cut in half leaves a
  quote open) is detected when the record does not parse, and reading resumes at the next line that
  starts like a csvlog record; a legitimate multi-line statement that merely contains such a line
  always parses, so it is never split (no forged records).
- jsonlog: one JSON object per line.
- stderr: `log_line_prefix`, then `SEVERITY:  message`; continuation lines start with a tab, and
  DETAIL/HINT/CONTEXT/STATEMENT lines that follow belong to the same message.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

import msgspec

from collectors.events import AuditItem, EventBuilder, strip_port
from collectors.logformat import LogFormat, decode
from collectors.pgaudit import AUDIT_PREFIX
from collectors.prefix import DEFAULT_PREFIX, line_regex
from collectors.stderrlog import StderrLog
from core.events import AccessEvent

FORMATS = ("csvlog", "jsonlog", "stderr")

MAX_OPEN_RECORD = 64 * 1024 * 1024
"""An open csvlog record larger than this is checked while data still arrives, and resynchronised
if it is provably damaged (an intact record of any size is kept whole)."""


# ------------------------------------------------------------------------------------------- csvlog

_CSV_RECORD_START = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z0-9+:/_-]+)?,")
_CSV_AUDIT = b',"AUDIT: '
_CSV_DENIED = b',42501,"'
_CSV_MIN_COLUMNS = 22  # PostgreSQL 13 wrote 24 columns, 14-17 write 26


def _is_pid(text: str) -> bool:
    """A process id as csvlog writes it (`isdigit` alone takes "²", which `int` refuses)."""
    return text.isdecimal() and len(text) <= 10


class CsvLog(LogFormat):
    """`log_destination = 'csvlog'`."""

    name = "csvlog"

    def __init__(self, builder: EventBuilder) -> None:
        super().__init__(builder)
        self._clients: dict[str, str] = {}

    def split(
        self, buf: bytes, *, final: bool = False, idle: bool = False
    ) -> tuple[list[bytes], int]:
        out: list[bytes] = []
        pos, n, records = 0, len(buf), 0
        find, count = buf.find, buf.count
        while pos < n:
            end = find(b"\n", pos)
            if end < 0:
                if final:
                    records += 1
                    self._single(buf[pos:], out)
                    pos = n
                break
            if not count(b'"', pos, end) & 1:
                records += 1
                if find(_CSV_AUDIT, pos, end) >= 0 or find(_CSV_DENIED, pos, end) >= 0:
                    out.append(buf[pos : end + 1])
                pos = end + 1
                continue
            # A quoted field runs past this line: follow it to the newline that closes it.
            quotes = 1
            close = end
            while True:
                nxt = find(b"\n", close + 1)
                if nxt < 0:
                    if final and not (quotes + count(b'"', close + 1, n)) & 1:
                        close = n - 1  # whole at the end of the data, only its newline missing
                    else:
                        close = -1
                    break
                quotes += count(b'"', close + 1, nxt)
                close = nxt
                if not quotes & 1:
                    break
            if close < 0:
                # Unterminated at the end of the buffer: wait for more, unless the writer is done
                # or quiet (then it is damaged) or the record is absurdly large.
                if final or idle or (n - pos > MAX_OPEN_RECORD and self._damaged(buf, pos)):
                    resume = self._resync(buf, pos, end)
                    if resume is not None:
                        records += 1
                        self.stats.bad("csvlog record cut short (resynchronised)")
                        pos = resume
                        continue
                    if final:
                        records += 1
                        self._single(buf[pos:], out)
                        pos = n
                break
            blob = buf[pos : close + 1]
            if self._sane(blob):
                records += 1
                if find(_CSV_AUDIT, pos, close) >= 0 or find(_CSV_DENIED, pos, close) >= 0:
                    out.append(blob)
                pos = close + 1
                continue
            # within the blob only: what lies past it may not have arrived yet, and the tail must
            # frame the same records whatever the pieces the log comes in
            resume = self._resync(buf, pos, end, close + 1)
            records += 1
            self.stats.bad("csvlog record cut short (resynchronised)")
            pos = resume if resume is not None else close + 1
        self.stats.records += records
        return out, pos

    def _single(self, raw: bytes, out: list[bytes]) -> None:
        if raw.strip():
            out.append(raw)

    @staticmethod
    def _resync(buf: bytes, start: int, first_end: int, limit: int | None = None) -> int | None:
        """Offset of the first line after `start`'s first line (and before `limit`) that starts
        like a csvlog record."""
        line = first_end + 1
        n = len(buf) if limit is None else limit
        while line < n:
            if _CSV_RECORD_START.match(buf, line):
                return line
            nxt = buf.find(b"\n", line)
            if nxt < 0:
                return None
            line = nxt + 1
        return None

    @staticmethod
    def _damaged(buf: bytes, start: int) -> bool:
        """Whether the open record at `start` cannot be the beginning of an intact record.

        Inside a quoted field an intact record has only doubled quotes; the records that follow
        a line cut in half bring single ones (`,"user",`), which strict CSV refuses at once.
        """
        try:
            for _ in csv.reader(io.StringIO(decode(buf[start:]), newline=""), strict=True):
                pass
        except csv.Error as exc:
            return "unexpected end of data" not in str(exc)
        return False

    @staticmethod
    def _sane(blob: bytes) -> bool:
        try:
            rows = list(csv.reader((decode(blob),), strict=True))
        except csv.Error:
            return False
        return len(rows) == 1 and len(rows[0]) >= _CSV_MIN_COLUMNS and _is_pid(rows[0][3])

    def parse(self, records: list[bytes]) -> list[AccessEvent]:
        if not records:
            return []
        texts = [decode(r) for r in records]
        try:
            rows = list(csv.reader(texts, strict=True))
            if len(rows) != len(texts):
                raise csv.Error("record count changed")
        except csv.Error:
            rows = []
            for text in texts:
                try:
                    rows.extend(csv.reader((text,), strict=True))
                except csv.Error as exc:
                    self.stats.bad(f"csvlog: bad CSV quoting: {exc}")
        return self._events(rows)

    def parse_text(self, text: str) -> list[AccessEvent] | None:
        """Fast path for whole files: the events of `text`, complete records decoded at once.

        The C csv reader frames and splits every record (cheaper than framing in Python when most
        records are audit records). Returns None, having counted nothing, when any record does
        not look like csvlog: the caller then takes the careful path (`split` + `parse`), which
        resynchronises after damage.
        """
        stats = self.stats
        saved = (stats.records, stats.events, stats.malformed, stats.forged, len(stats.samples))
        try:
            events = self._events(_framed_rows(text), strict=True)
        except (csv.Error, _NotCsvlog):
            stats.records, stats.events, stats.malformed, stats.forged = saved[:4]
            del stats.samples[saved[4] :]
            return None
        return events

    def _events(self, rows: Iterable[list[str]], *, strict: bool = False) -> list[AccessEvent]:
        """The events of csvlog rows; with `strict`, a row that is not csvlog raises _NotCsvlog."""
        out: list[AccessEvent] = []
        items: list[AuditItem] = []
        builder, stats, clients = self.builder, self.stats, self._clients
        records = 0
        for row in rows:
            records += 1
            # `_is_pid` inlined: this loop runs once per record
            if len(row) < _CSV_MIN_COLUMNS or len(row[3]) > 10 or not row[3].isdecimal():
                if strict:
                    raise _NotCsvlog
                stats.bad(f"csvlog: {len(row)} columns, expected 26")
                continue
            message = row[13]
            if message.startswith(AUDIT_PREFIX):
                if row[18]:
                    stats.forged += 1
                    continue
                conn = row[4]
                addr = clients.get(conn)
                if addr is None:
                    addr = clients[conn] = strip_port(conn)
                    if len(clients) > 10_000:
                        clients.clear()
                app = row[22] if len(row) > 22 else ""
                items.append((row[0], row[1], row[2], addr, app, row[5], int(row[3]), message))
            elif row[12] == "42501":
                if items:
                    out.extend(builder.audits(items))
                    items = []
                event = builder.denied(
                    row[0],
                    row[1],
                    row[2],
                    strip_port(row[4]),
                    row[22] if len(row) > 22 else "",
                    row[5],
                    int(row[3]),
                    message,
                    row[19] or None,
                )
                if event is not None:
                    out.append(event)
        if items:
            out.extend(builder.audits(items))
        if strict:
            stats.records += records
        return out


class _NotCsvlog(Exception):
    """A row of the fast path that is not a csvlog record: take the careful path."""


def _framed_rows(text: str) -> Iterator[list[str]]:
    """The CSV rows of `text`, each checked to end where `CsvLog.split` would end it: at the
    first newline after an even number of quotes. The C reader takes a quote inside an unquoted
    field as a plain character (a damaged record: PostgreSQL quotes every text column); the
    framer counts it. Where the two part, the careful path decides (raises _NotCsvlog)."""
    odd = 0
    fresh = True  # the next line read starts a row
    past_end = False  # the reader went on past a newline where the framer ends a record

    def lines() -> Iterator[str]:
        nonlocal odd, fresh, past_end
        for line in io.StringIO(text, newline="\n"):
            past_end |= not (fresh or odd)
            fresh = False
            odd ^= line.count('"') & 1
            yield line

    for row in csv.reader(lines(), strict=True):
        if odd or past_end:
            raise _NotCsvlog
        yield row
        fresh = True


def csv_boundary(buf: bytes) -> int:
    """The offset just after the last complete csvlog record in `buf` (0 if none).

    A record ends at a newline outside quotes: where the quotes before it are even in number.
    """
    end = buf.rfind(b"\n")
    if end < 0:
        return 0
    quotes = buf.count(b'"', 0, end)
    while quotes & 1:
        prev = buf.rfind(b"\n", 0, end)
        if prev < 0:
            return 0
        quotes -= buf.count(b'"', prev, end)
        end = prev
    return end + 1


# ------------------------------------------------------------------------------------------ jsonlog


class _JsonRecord(msgspec.Struct):
    timestamp: str = ""
    user: str = ""
    dbname: str = ""
    pid: int = 0
    remote_host: str = ""
    session_id: str = ""
    error_severity: str = ""
    state_code: str = ""
    message: str = ""
    context: str = ""
    statement: str = ""
    application_name: str = ""


_JSON_AUDIT = b'"message":"AUDIT: '
_JSON_DENIED = b'"state_code":"42501"'


class JsonLog(LogFormat):
    """`log_destination = 'jsonlog'` (PostgreSQL 15 and later)."""

    name = "jsonlog"

    def __init__(self, builder: EventBuilder) -> None:
        super().__init__(builder)
        self._decoder = msgspec.json.Decoder(_JsonRecord)

    def split(
        self, buf: bytes, *, final: bool = False, idle: bool = False
    ) -> tuple[list[bytes], int]:
        out: list[bytes] = []
        pos, n, records = 0, len(buf), 0
        find = buf.find
        while pos < n:
            end = find(b"\n", pos)
            if end < 0:
                if not final:
                    break
                end = n
            records += 1
            if find(_JSON_AUDIT, pos, end) >= 0 or find(_JSON_DENIED, pos, end) >= 0:
                out.append(buf[pos:end])
            pos = end + 1
        self.stats.records += records
        return out, min(pos, n)

    def parse(self, records: list[bytes]) -> list[AccessEvent]:
        out: list[AccessEvent] = []
        decode = self._decoder.decode
        builder = self.builder
        items: list[AuditItem] = []  # batched, as for csvlog (one nested-CSV reader per batch)
        for raw in records:
            try:
                try:
                    rec = decode(raw)
                except UnicodeDecodeError:
                    # not UTF-8 inside a string (a SQL_ASCII database passes a client's bytes
                    # through): replaced, as the other formats do, rather than lost
                    rec = decode(raw.decode("utf-8", "replace").encode())
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.stats.bad(f"jsonlog: {exc}")
                continue
            if rec.message.startswith(AUDIT_PREFIX):
                if rec.context:
                    self.stats.forged += 1
                    continue
                items.append(
                    (
                        rec.timestamp,
                        rec.user,
                        rec.dbname,
                        rec.remote_host,
                        rec.application_name,
                        rec.session_id,
                        rec.pid,
                        rec.message,
                    )
                )
            elif rec.state_code == "42501":
                if items:
                    out.extend(builder.audits(items))
                    items = []
                event = builder.denied(
                    rec.timestamp,
                    rec.user,
                    rec.dbname,
                    rec.remote_host,
                    rec.application_name,
                    rec.session_id,
                    rec.pid,
                    rec.message,
                    rec.statement or None,
                )
                if event is not None:
                    out.append(event)
        if items:
            out.extend(builder.audits(items))
        return out


# ------------------------------------------------------------------------------------------- sniff


def make_format(
    name: str, builder: EventBuilder, log_line_prefix: str = DEFAULT_PREFIX
) -> LogFormat:
    """The parser for a format name (`csvlog`, `jsonlog`, `stderr`)."""
    if name == "csvlog":
        return CsvLog(builder)
    if name == "jsonlog":
        return JsonLog(builder)
    if name == "stderr":
        return StderrLog(builder, log_line_prefix)
    raise ValueError(f"unknown log format {name!r}, expected one of {', '.join(FORMATS)}")


def sniff(head: bytes, log_line_prefix: str = DEFAULT_PREFIX) -> str | None:
    """Guess the format from the first bytes of a file; None for no PostgreSQL log we know."""
    regex = line_regex(log_line_prefix)
    for raw in head.split(b"\n")[:50]:
        line = raw.strip(b"\r")
        if not line.strip() or line.startswith(b"\t"):
            continue
        if line.startswith(b'{"timestamp":'):
            return "jsonlog"
        if _CSV_RECORD_START.match(line):
            return "csvlog"
        if b"\x00" in line:
            return None
        if regex.match(decode(line)):
            return "stderr"
    return None


__all__ = [
    "FORMATS",
    "CsvLog",
    "JsonLog",
    "LogFormat",
    "StderrLog",
    "csv_boundary",
    "make_format",
    "sniff",
]
