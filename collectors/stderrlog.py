"""The stderr log format: `log_line_prefix`, then `SEVERITY:  message`.

A message continues on lines that start with a tab (PostgreSQL puts one after every newline of
the message, so a statement's own lines can never pass for records), and DETAIL, HINT, CONTEXT,
STATEMENT, QUERY and LOCATION lines that follow belong to the same message.

The prefix is not escaped: an application_name (or user name) may itself contain `LOG:  `. A line
is therefore tried at every `SEVERITY:  ` where the prefix pattern ends, first to last, and a split
that yields an event about a watched table wins: a client cannot hide its reads by choosing its
application_name. (It can at most make its own line look like another record of its own.)
"""

from __future__ import annotations

import re

from collectors.events import EventBuilder
from collectors.logformat import LogFormat, decode
from collectors.pgaudit import AUDIT_PREFIX, MalformedRecord, parse_audit_message
from collectors.prefix import (
    DEFAULT_PREFIX,
    PRIMARY_SEVERITIES,
    SECONDARY_SEVERITIES,
    prefix_pattern,
)
from collectors.timestamps import BadTimestamp
from core.events import AccessEvent

_AUDIT = b"AUDIT: "
_DENIED = (b"ERROR:  permission denied for ", b"ERROR:  42501: permission denied for ")
_SECONDARY_MARK = re.compile(rb"(?:DETAIL|HINT|CONTEXT|STATEMENT|QUERY|LOCATION):  ")
_PRIMARY_MARK = re.compile(rf"(?:{PRIMARY_SEVERITIES}):  ")
_SQLSTATE = re.compile(r"[0-9A-Z]{5}: ")  # log_error_verbosity = verbose: `LOG:  00000: AUDIT:`
_MAX_SPLITS = 32


def _candidate(buf: bytes, start: int, end: int) -> bool:
    find = buf.find
    return (
        find(_AUDIT, start, end) >= 0
        or find(_DENIED[0], start, end) >= 0
        or find(_DENIED[1], start, end) >= 0
    )


class StderrLog(LogFormat):
    """`log_destination = 'stderr'` with the logging collector, lines per `log_line_prefix`."""

    name = "stderr"

    def __init__(self, builder: EventBuilder, log_line_prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__(builder)
        self.prefix = log_line_prefix
        pattern = prefix_pattern(log_line_prefix)
        self._prefix = re.compile(pattern, re.DOTALL)
        severities = "|".join(sorted(SECONDARY_SEVERITIES))
        self._secondary_line = re.compile(
            rf"{pattern}(?P<sev>{severities}):  (?P<msg>.*)", re.DOTALL
        )

    # ------------------------------------------------------------------ framing

    def _is_secondary(self, line: bytes) -> bool:
        return (
            _SECONDARY_MARK.search(line) is not None
            and self._secondary_line.match(decode(line)) is not None
        )

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
                end = n  # a last line without its newline
            if buf[pos] == 0x09:  # a continuation of a message we did not keep
                pos = end + 1
                continue
            candidate = _candidate(buf, pos, end)
            # The message ends where a line that is neither a continuation nor a
            # DETAIL/STATEMENT/... line of this message begins.
            last, complete = end, False
            while last + 1 < n:
                nxt = last + 1
                nend = find(b"\n", nxt)
                if nend < 0:
                    if idle and buf[nxt] != 0x09:
                        complete = True  # PostgreSQL writes a message at once: this is the next
                        break
                    if not final:
                        break
                    nend = n
                if buf[nxt] == 0x09 or (candidate and self._is_secondary(buf[nxt:nend])):
                    last = nend
                    continue
                complete = True
                break
            if not complete and not (final or idle):
                break
            if not complete and last + 1 < n and not final:
                break  # idle, but a continuation line is still partial: wait for it
            records += 1
            if candidate:
                out.append(buf[pos : last + 1])
            pos = last + 1
        self.stats.records += records
        return out, min(pos, n)

    # ------------------------------------------------------------------ parsing

    def parse(self, records: list[bytes]) -> list[AccessEvent]:
        out: list[AccessEvent] = []
        for raw in records:
            event = self._parse_one(decode(raw))
            if event is not None:
                out.append(event)
        return out

    def _splits(self, line: str) -> list[tuple[dict[str, str | None], str, str]]:
        """Every way the first line parses as prefix + `SEVERITY:  ` + message, first first."""
        found: list[tuple[dict[str, str | None], str, str]] = []
        for mark in _PRIMARY_MARK.finditer(line):
            head = self._prefix.fullmatch(line, 0, mark.start())
            if head is not None:
                found.append((head.groupdict(), mark.group()[:-3], line[mark.end() :]))
                if len(found) >= _MAX_SPLITS:
                    break
        return found

    def _rest(self, lines: list[str]) -> tuple[list[str], dict[str, list[str]]]:
        """The continuation lines of the message, and its DETAIL/STATEMENT/... parts."""
        continuation: list[str] = []
        parts: dict[str, list[str]] = {}
        current = continuation
        for line in lines:
            if line.startswith("\t"):
                current.append(line[1:])
                continue
            sub = self._secondary_line.match(line)
            if sub is None:
                continue
            current = parts.setdefault(sub.group("sev"), [])
            current.append(sub.group("msg"))
        return continuation, parts

    def _parse_one(self, text: str) -> AccessEvent | None:
        lines = text.rstrip("\n").split("\n")
        splits = self._splits(lines[0])
        if not splits:
            if self._secondary_line.match(lines[0]) is None:  # a STATEMENT line of another's
                self.stats.bad(f"stderr: line does not match log_line_prefix {self.prefix!r}")
            return None
        continuation, parts = self._rest(lines[1:])
        tail = "".join("\n" + c for c in continuation)
        errors: list[str] = []
        for fields, severity, first in splits:
            message = first + tail
            if not message.startswith(AUDIT_PREFIX) and _SQLSTATE.match(message):
                message = message[7:]
            try:
                event = self._event(fields, severity, message, parts, trial=len(splits) > 1)
            except (BadTimestamp, MalformedRecord) as exc:
                errors.append(str(exc))
                continue
            if event is not None:
                return event
        if len(errors) == len(splits):
            self.stats.bad(f"stderr: {errors[0]}")
        return None

    def _event(
        self,
        fields: dict[str, str | None],
        severity: str,
        message: str,
        parts: dict[str, list[str]],
        *,
        trial: bool,
    ) -> AccessEvent | None:
        """The event of one way of reading the line (None: a record, but no event of ours).

        Raises:
            BadTimestamp, MalformedRecord: this split is not a record.
        """
        time = fields.get("m") or fields.get("t") or ""
        if not time and fields.get("n"):
            time = self.builder.epoch(fields["n"] or "")
        client = fields.get("h") or (fields.get("r") or "")
        if "(" in client and client.endswith(")"):
            client = client[: client.rfind("(")]
        user = fields.get("u") or ""
        database = fields.get("d") or ""
        app = fields.get("a") or ""
        session = fields.get("c") or ""
        pid = int(fields.get("p") or 0)
        if message.startswith(AUDIT_PREFIX):
            if trial:  # one of several readings: raise if this one is not a pgaudit record
                parse_audit_message(message)
            if "CONTEXT" in parts:
                self.stats.forged += 1
                return None
            return self.builder.audit(time, user, database, client, app, session, pid, message)
        if severity == "ERROR" and message.startswith("permission denied for "):
            statement = parts.get("STATEMENT")
            return self.builder.denied(
                time,
                user,
                database,
                client,
                app,
                session,
                pid,
                message,
                "\n".join(statement) if statement is not None else None,
            )
        return None
