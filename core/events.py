"""Access events: one per pgaudit record (or permission-denied error) about a relation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import msgspec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventKind(StrEnum):
    """What a log record told us."""

    AUDIT = "audit"
    """A pgaudit record (SESSION or OBJECT) naming a relation."""
    DENIED = "denied"
    """A statement refused with `permission denied` (SQLSTATE 42501): someone probing."""
    CONTROL = "control"
    """A pgaudit record that may change the audit set-up (GRANT/REVOKE, roles, `pgaudit.*`
    settings, the extension). It names no watched table; the engine looks for tampering."""


def utc_from_us(time_us: int) -> datetime:
    """Microseconds since the Unix epoch as an aware UTC datetime.

    >>> utc_from_us(1_764_387_664_994_000)
    datetime.datetime(2025, 11, 29, 3, 41, 4, 994000, tzinfo=datetime.timezone.utc)
    """
    return _EPOCH + timedelta(microseconds=time_us)


def us_from_utc(when: datetime) -> int:
    """An aware datetime as microseconds since the Unix epoch."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))
_SECONDS = tuple(f":{s:02d}" for s in range(60))


class IsoFormatter:
    """Formats event times as ISO 8601 with an offset, fast: the part up to the second is cached.

    >>> IsoFormatter().format(1_764_387_664_994_000)
    '2025-11-29T03:41:04.994+00:00'
    """

    __slots__ = ("_seconds", "_minutes", "_last_second", "_last_head")

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}
        self._minutes: dict[int, str] = {}
        self._last_second = -1
        self._last_head = ""

    def format(self, time_us: int) -> str:
        """`YYYY-MM-DDTHH:MM:SS.mmm+00:00` (microseconds when they are not whole milliseconds)."""
        second, micro = divmod(time_us, 1_000_000)
        if second == self._last_second:
            head = self._last_head
        else:
            head = self._seconds.get(second) or self._head(second)
            self._last_second, self._last_head = second, head
        if micro % 1000:
            return f"{head}.{micro:06d}+00:00"
        return head + _MILLIS[micro // 1000]

    def _head(self, second: int) -> str:
        minute, sec = divmod(second, 60)
        start = self._minutes.get(minute)
        if start is None:
            days, rest = divmod(minute * 60, 86_400)
            day = (_EPOCH + timedelta(days=days)).date().isoformat()
            start = f"{day}T{rest // 3600:02d}:{rest // 60 % 60:02d}"
            if len(self._minutes) > 4096:
                self._minutes.clear()
            self._minutes[minute] = start
        head = start + _SECONDS[sec]
        if len(self._seconds) > 4096:
            self._seconds.clear()
        self._seconds[second] = head
        return head


_ISO = IsoFormatter()


class AccessEvent(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One access to a relation, as the audit trail reported it.

    A msgspec Struct rather than a dataclass, and the time as integer microseconds (UTC) rather
    than a datetime: a replay builds a million of these in a few seconds, and building a datetime
    costs more than the rest of the event. `time` gives the aware datetime. Encoded as an array
    (msgpack between the processes of a parallel replay): half the bytes of a map.

    All text fields are raw, attacker-controlled values; render them only through the safe-text
    helpers of the outer rooms.
    """

    time_us: int
    """When PostgreSQL logged the record: microseconds since the Unix epoch, UTC."""
    kind: EventKind
    user: str
    database: str
    client_addr: str
    """Client address without the port; "[local]" for a Unix socket, "" when unknown."""
    application_name: str
    session_id: str
    audit_type: str | None
    """"SESSION" or "OBJECT" for audit records; None for a permission-denied event."""
    statement_id: int | None
    substatement_id: int | None
    class_: str
    """pgaudit class: READ, WRITE, FUNCTION, ROLE, DDL, MISC, MISC_SET."""
    command: str
    object_type: str
    object_name: str
    statement: str | None
    """Exact statement text; None when pgaudit wrote `<not logged>` or `<previously logged>`."""
    parameters: tuple[str, ...] | None
    """Bind parameters; None for `<none>`, `<not logged>`, `<previously logged>`."""
    rows: int | None
    """Rows returned (pgaudit.log_rows); None when not logged."""
    pid: int = 0

    @property
    def time(self) -> datetime:
        """When PostgreSQL logged the record (aware, UTC)."""
        return utc_from_us(self.time_us)

    def contract_line(self, iso: IsoFormatter = _ISO) -> EventLine:
        """The event as `tablewatch replay --events` prints it (DESIGN.md, CLI contract)."""
        return EventLine(
            iso.format(self.time_us),
            self.user,
            self.database,
            self.client_addr,
            self.application_name,
            self.session_id,
            self.audit_type,
            self.statement_id,
            self.substatement_id,
            self.class_,
            self.command,
            self.object_type,
            self.object_name,
            self.statement,
            self.parameters,
            self.rows,
        )

    def contract_dict(self) -> dict[str, Any]:
        """`contract_line` as the plain dict a JSON reader gets."""
        line: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self.contract_line()))
        return line


class EventLine(msgspec.Struct, rename={"class_": "class"}):
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
