"""Builds `AccessEvent`s from the fields of a parsed log record, for every log format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from collectors.pgaudit import (
    MAX_DIGITS,
    PARAMETER_TOKENS,
    STATEMENT_TOKENS,
    MalformedRecord,
    audit_fields,
    split_csv_many,
)
from collectors.timestamps import BadTimestamp, TimestampParser
from core.events import AccessEvent, EventKind, utc_from_us
from core.tables import TableName, WatchedTables

_DENIED = re.compile(
    r"permission denied for (table|view|materialized view|sequence|relation|schema|column) "
    r"(.+)\Z",
    re.DOTALL,
)
_MAX_SAMPLES = 5


@dataclass(slots=True)
class ParseStats:
    """Counts of what the parser saw; the samples explain the first few problems."""

    records: int = 0
    """Log records framed (audit or not)."""
    events: int = 0
    """Events emitted (concerning a watched table, when tables are given)."""
    malformed: int = 0
    """Records that could not be parsed (skipped)."""
    forged: int = 0
    """`AUDIT:` messages not written by pgaudit (RAISE from a function: they carry a context)."""
    samples: list[str] = field(default_factory=list)

    def bad(self, reason: str) -> None:
        """Count a malformed record, keeping the first few reasons."""
        self.malformed += 1
        if len(self.samples) < _MAX_SAMPLES:
            self.samples.append(reason)


def strip_port(connection_from: str) -> str:
    """`10.0.0.5:52344` -> `10.0.0.5`; `::1:5432` -> `::1`; `[local]` unchanged.

    >>> strip_port("10.0.0.5:52344"), strip_port("[local]"), strip_port("::1:5432")
    ('10.0.0.5', '[local]', '::1')
    """
    if connection_from.startswith("["):
        return connection_from
    head, sep, tail = connection_from.rpartition(":")
    return head if sep and tail.isdigit() else connection_from


AuditItem = tuple[str, str, str, str, str, str, int, str]
"""What a log format hands over for a pgaudit record: (log time, user, database, client address
without port, application_name, session id, pid, message)."""


_CONTROL_CLASSES = frozenset({"ROLE", "DDL", "MISC", "MISC_SET"})
_ROLE_COMMANDS = frozenset({"REVOKE", "DROP ROLE", "ALTER ROLE", "DROP OWNED", "REASSIGN OWNED"})


def is_control(fields: list[str]) -> bool:
    """A record (split, 9 or 10 fields) that may change the audit set-up: a REVOKE, a change to
    roles, or anything naming pgaudit (settings, the extension)."""
    audit_class = fields[3]
    if audit_class not in _CONTROL_CLASSES:
        return False
    if audit_class == "ROLE" and fields[4] in _ROLE_COMMANDS:
        return True
    return "pgaudit" in fields[7].lower()


class EventBuilder:
    """Turns record fields into events, keeping only those about a watched table (if given).

    With `control`, records that may change the audit set-up (see `is_control`) are kept too, as
    `EventKind.CONTROL` events, for the engine's tamper detection; `replay --events` leaves it off.
    """

    __slots__ = ("watched", "stats", "control", "_time")

    def __init__(
        self,
        watched: WatchedTables | None,
        stats: ParseStats | None = None,
        *,
        control: bool = False,
    ) -> None:
        self.watched = watched if watched else None
        self.stats = stats if stats is not None else ParseStats()
        self.control = control
        self._time = TimestampParser()

    def audits(self, items: list[AuditItem]) -> list[AccessEvent]:
        """The events of pgaudit messages (those about a watched table, when tables are given).

        Batched: the nested CSV of all messages is split by one C-level reader.
        """
        stats = self.stats
        match = self.watched.match if self.watched is not None else None
        control = self.control
        parse_us = self._time.parse_us
        out: list[AccessEvent] = []
        # the whole message is split: its first field is then "AUDIT: TYPE" (never quoted), which
        # saves copying every message without its prefix
        split = split_csv_many([item[7] for item in items])
        for item, fields in zip(items, split, strict=True):
            if isinstance(fields, MalformedRecord):
                stats.bad(str(fields))
                continue
            event_kind = EventKind.AUDIT
            if match is not None and (len(fields) < 7 or match(fields[6]) is None):
                if len(fields) in (9, 10):
                    if not (control and is_control(fields)):
                        continue  # well-formed, about another relation
                    event_kind = EventKind.CONTROL
            try:
                # audit_fields() inlined for the common shape (9 or 10 fields, decimal ids,
                # parameters without quotes): this loop runs once per audit record
                count = len(fields)
                kind = fields[0] = fields[0][7:]
                raw = fields[8] if count > 8 else ""
                record: tuple[object, ...]
                if (
                    (count == 9 or count == 10)
                    and (kind == "OBJECT" or kind == "SESSION")
                    and fields[1].isdecimal()
                    and fields[2].isdecimal()
                    and len(fields[1]) + len(fields[2]) <= MAX_DIGITS  # else audit_fields says
                    and '"' not in raw
                    and "\n" not in raw
                    and "\r" not in raw
                    and (count == 9 or (fields[9].isdecimal() and len(fields[9]) <= MAX_DIGITS))
                ):
                    statement = fields[7]
                    record = (
                        kind,
                        int(fields[1]),
                        int(fields[2]),
                        fields[3],
                        fields[4],
                        fields[5],
                        fields[6],
                        None if statement in STATEMENT_TOKENS else statement,
                        None if raw in PARAMETER_TOKENS else tuple(raw.split(",")),
                        int(fields[9]) if count == 10 else None,
                    )
                else:
                    record = audit_fields(fields)
                time_us = parse_us(item[0])
            except (MalformedRecord, BadTimestamp) as exc:
                stats.bad(str(exc))
                continue
            out.append(
                AccessEvent(
                    time_us,
                    event_kind,
                    item[1],
                    item[2],
                    item[3],
                    item[4],
                    item[5],
                    *record,
                    item[6],
                )
            )
        stats.events += len(out)
        return out

    def audit(
        self,
        time: str,
        user: str,
        database: str,
        client_addr: str,
        application_name: str,
        session_id: str,
        pid: int,
        message: str,
    ) -> AccessEvent | None:
        """The event of one pgaudit message, or None (not about a watched table, malformed)."""
        events = self.audits(
            [(time, user, database, client_addr, application_name, session_id, pid, message)]
        )
        return events[0] if events else None

    def denied(
        self,
        time: str,
        user: str,
        database: str,
        client_addr: str,
        application_name: str,
        session_id: str,
        pid: int,
        message: str,
        statement: str | None,
    ) -> AccessEvent | None:
        """The event of a `permission denied` error, or None when not about a watched table."""
        match = _DENIED.match(message)
        if match is None:
            return None
        object_type = match.group(1).upper()
        name = match.group(2)
        object_name = name
        if self.watched is not None:
            if object_type == "SCHEMA":
                # no relation named: the statement says which watched table was the target
                table = self._named_in(statement or "")
            else:
                table = self.watched.match_relname(name)
            if table is None:
                return None
            object_name = str(table)
        try:
            when = self._time.parse_us(time)
        except BadTimestamp as exc:
            self.stats.bad(str(exc))
            return None
        command = statement.split(None, 1)[0].upper() if statement and statement.strip() else ""
        self.stats.events += 1
        return AccessEvent(
            when,
            EventKind.DENIED,
            user,
            database,
            client_addr,
            application_name,
            session_id,
            None,
            None,
            None,
            "READ" if command in ("SELECT", "COPY", "WITH", "TABLE") else "",
            command[:32],
            object_type,
            object_name,
            statement,
            None,
            None,
            pid,
        )

    def _named_in(self, statement: str) -> TableName | None:
        """The watched table a statement names (as a whole word, schema-qualified if known)."""
        assert self.watched is not None
        lowered = statement.lower()
        for table in self.watched.tables:
            word = re.escape(table.name)
            if table.schema is not None:
                word = re.escape(table.schema) + r'"?\s*\.\s*"?' + word
            if re.search(rf'(?<![\w$"]){word}(?![\w$])', lowered):
                return table
        return None

    def epoch(self, text: str) -> str:
        """`%n` epoch seconds as a log timestamp the parser understands.

        Raises:
            BadTimestamp: not a number of seconds.
        """
        when = utc_from_us(self._time.parse_epoch_us(text))
        return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"
