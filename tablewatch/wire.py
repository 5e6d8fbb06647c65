"""The agent API's JSON (DESIGN.md, agent API): a snapshot and an alert as JSON objects, and back.

Encoding follows the contract: `{"taken_at", "readers": [{"user", "client_addr",
"application_name", "table", "severity", "score", "reasons", ...}], "findings", "sources",
"alerts", ...}`; times are ISO 8601 with an offset (microseconds kept), reasons carry their
`code` and `detail` as `replay` prints them plus their own severity and score. Texts are passed as
they are (raw database values: the dashboard makes them safe when it draws them), but bounded: a
statement is cut to STATEMENT_CHARS and parameters to PARAMETERS values of PARAMETER_CHARS, each
text to ESCAPED times its budget once JSON-escaped, so that a 2 MB statement (or one made of
control characters) cannot make every snapshot huge. A reader's live backends (pg_stat_activity)
go the same way: at most BACKENDS of them, each query cut like a statement.

Decoding is strict about types and lenient about additions: a key it does not know is ignored (a
newer agent may send more), a missing optional key takes its default, and anything else is a
`WireError` naming the field (`readers[3].score: expected an integer`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec

from core.dbside import Backend
from core.events import AccessEvent, EventKind, IsoFormatter, us_from_utc
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.safetext import ELLIPSIS
from core.snapshot import (
    AlertView,
    Delivery,
    ReaderView,
    Snapshot,
    StatementSeen,
    TableView,
)
from core.sources import SourceHealth

STATEMENT_CHARS: Final = 1024
"""The dashboard shows at most 600 characters of a statement."""
PARAMETERS: Final = 32
PARAMETER_CHARS: Final = 128
PID_MAX: Final = 2**31 - 1
"""A backend's pid is a PostgreSQL int4."""
BACKENDS: Final = 32
"""A reader's backends sent at most (a reader caught in the act has a few; a pool of hundreds
under one principal is an application, and would make every snapshot huge)."""
NAME_CHARS: Final = 256
"""A backend's short texts (role, database, address, application, state, kind, table)."""
ESCAPED: Final = 2
"""A text may take at most this many times its character budget once JSON-escaped: control
characters take six bytes each (\u001b), and a hostile statement can be made of nothing else."""

T = TypeVar("T")
Json = dict[str, Any]


class WireError(ValueError):
    """JSON that is not what the API sends or accepts; `str()` names the field, in one line."""


_ISO = IsoFormatter()


def _time(time_us: int) -> str:
    return _ISO.format(time_us)


def _cut(text: str | None, limit: int = STATEMENT_CHARS) -> str | None:
    """`text` within `limit` characters, and within ESCAPED times that once in JSON."""
    if text is None:
        return None
    if len(text) > limit:
        text = text[: limit - 1] + ELLIPSIS
    size = len(msgspec.json.encode(text))
    while size > ESCAPED * limit + 2 and len(text) > 1:
        text = text[: max(1, len(text) * ESCAPED * limit // size - 1)] + ELLIPSIS
        size = len(msgspec.json.encode(text))
    return text


def _params(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    kept = [_cut(v, PARAMETER_CHARS) or "" for v in values[:PARAMETERS]]
    if len(values) > PARAMETERS:
        kept.append(f"{ELLIPSIS} {len(values) - PARAMETERS} more")
    return kept


# encoding -------------------------------------------------------------------------------------


def principal_json(p: PrincipalKey) -> Json:
    """`{"user", "client_addr", "application_name", "table"}` (and `agent` in a fleet)."""
    out = p.fields()
    if p.agent:
        out["agent"] = p.agent
    return out


def reason_json(r: Reason) -> Json:
    return {"code": r.code, "detail": r.detail, "severity": r.severity.label, "score": r.score}


def reader_json(r: ReaderView) -> Json:
    """A reader: the contract's keys first, then what the dashboard shows."""
    return {
        **principal_json(r.principal),
        "severity": r.severity.label,
        "score": r.score,
        "reasons": [reason_json(x) for x in r.reasons],
        "statements": r.statements,
        "denied": r.denied,
        "rows_hour": r.rows_hour,
        "rows_day": r.rows_day,
        "fraction_hour": r.fraction_hour,
        "rows_estimated": r.rows_estimated,
        "first_seen": _time(r.first_seen_us),
        "last_seen": _time(r.last_seen_us),
        "expected": r.expected,
        "recent": list(r.recent),
        "hours": list(r.hours),
        "seen": [
            {
                "time": _time(s.time_us),
                "command": s.command,
                "statement": _cut(s.statement),
                "parameters": _params(s.parameters),
                "rows": s.rows,
            }
            for s in r.seen
        ],
        "snoozed_until": None if r.snoozed_until_us is None else _time(r.snoozed_until_us),
        "backends": [backend_json(b) for b in r.backends[:BACKENDS]],
    }


def backend_json(b: Backend) -> Json:
    """A backend reading the table now: its query bounded like a statement, the rest like
    names (all raw: the dashboard makes them safe)."""
    return {
        "pid": b.pid,
        "user": _cut(b.user, NAME_CHARS),
        "database": _cut(b.database, NAME_CHARS),
        "client_addr": _cut(b.client_addr, NAME_CHARS),
        "application_name": _cut(b.application_name, NAME_CHARS),
        "state": _cut(b.state, NAME_CHARS),
        "kind": _cut(b.kind, NAME_CHARS),
        "tables": [_cut(t, NAME_CHARS) for t in b.tables[:PARAMETERS]],
        "query": _cut(b.query),
        "backend_start": _time(b.backend_start_us),
        "xact_start": None if b.xact_start_us is None else _time(b.xact_start_us),
        "query_start": None if b.query_start_us is None else _time(b.query_start_us),
    }


def finding_json(f: Finding) -> Json:
    return {
        "time": _time(f.time_us),
        "severity": f.severity.label,
        "score": f.score,
        **principal_json(f.principal),
        "reasons": [reason_json(x) for x in f.reasons],
    }


def source_json(h: SourceHealth) -> Json:
    return {
        "name": h.name,
        "state": h.state,
        "detail": h.detail,
        "last_event_time": None if h.last_event_time is None else h.last_event_time.isoformat(),
        "bytes_behind": h.bytes_behind,
        "events": h.events,
        "records": h.records,
        "malformed": h.malformed,
        "forged": h.forged,
        "lost_bytes": h.lost_bytes,
        "rotations": h.rotations,
        "notes": list(h.notes),
    }


def alert_json(a: AlertView) -> Json:
    """An alert and where it went."""
    return {
        "key": a.key,
        "time": _time(a.time_us),
        **principal_json(a.principal),
        "severity": a.severity.label,
        "summary": a.summary,
        "note": a.note,
        "operator": a.operator,
        "origin": a.origin,
        "state": a.state,
        "findings": a.findings,
        "suppressed": a.suppressed,
        "updated": _time(a.updated_us) if a.updated_us else None,
        "by": a.by,
        "said": a.said,
        "deliveries": [
            {"sink": d.sink, "state": d.state, "detail": d.detail} for d in a.deliveries
        ],
    }


def event_json(e: AccessEvent) -> Json:
    """An access event of the live tail: the `replay --events` fields, and its kind."""
    out = e.contract_dict()
    out["statement"] = _cut(e.statement)
    out["parameters"] = _params(e.parameters)
    out["kind"] = e.kind.value
    return out


def snapshot_json(s: Snapshot, agent: str) -> Json:
    """The whole snapshot, as `GET /api/v1/snapshot` answers."""
    return {
        "agent": agent,
        "taken_at": _time(s.taken_us),
        "readers": [reader_json(r) for r in s.readers],
        "findings": [finding_json(f) for f in s.findings],
        "sources": [source_json(h) for h in s.sources],
        "alerts": [alert_json(a) for a in s.alerts],
        "tail": [event_json(e) for e in s.tail],
        "tables": [{"name": t.name, "rows": t.rows} for t in s.tables],
        "events": s.events,
        "learning": s.learning,
        "rate": s.rate,
        "readers_total": s.readers_total,
        "suppressed": s.suppressed,
        "outbox": s.outbox,
    }


def encode(value: Json) -> bytes:
    """JSON bytes; a lone surrogate in a text (which UTF-8 cannot carry) becomes U+FFFD rather
    than failing the whole answer."""
    try:
        return msgspec.json.encode(value)
    except UnicodeEncodeError:
        return msgspec.json.encode(_scrubbed(value))


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _scrubbed(value: object) -> object:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


# decoding -------------------------------------------------------------------------------------


_REQUIRED: Final = object()


class Fields:
    """A JSON object read with types checked; errors name the field by its path."""

    def __init__(self, raw: object, path: str = "") -> None:
        if not isinstance(raw, dict):
            raise WireError(f"{path or 'body'}: expected an object")
        self.raw: Mapping[str, Any] = raw
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, default: object) -> object:
        if key not in self.raw:
            if default is _REQUIRED:
                raise WireError(f"{self._name(key)}: missing")
            return default
        return self.raw[key]

    def text(self, key: str, default: str | None = None, limit: int = 0) -> str:
        """The string `key` (required unless a `default` is given)."""
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str):
            raise WireError(f"{self._name(key)}: expected a string")
        if limit and len(value) > limit:
            raise WireError(f"{self._name(key)}: longer than {limit:,} characters")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self._get(key, None)
        if value is not None and not isinstance(value, str):
            raise WireError(f"{self._name(key)}: expected a string or null")
        return value

    def integer(self, key: str, default: int | None = None, low: int = 0) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise WireError(f"{self._name(key)}: expected an integer")
        if value < low:
            raise WireError(f"{self._name(key)}: expected {low} or more")
        return value

    def optional_integer(self, key: str) -> int | None:
        value = self._get(key, None)
        if value is None:
            return None
        return self.integer(key)

    def number(self, key: str, default: float | None = None) -> float:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise WireError(f"{self._name(key)}: expected a number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self._get(key, None) is None else self.number(key)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise WireError(f"{self._name(key)}: expected true or false")
        return value

    def moment(self, key: str) -> datetime:
        """The ISO 8601 time `key`, with its offset."""
        value = self.text(key)
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise WireError(f"{self._name(key)}: not an ISO 8601 time") from None
        if when.tzinfo is None:
            raise WireError(f"{self._name(key)}: a time needs its offset")
        return when

    def time_us(self, key: str) -> int:
        return us_from_utc(self.moment(key))

    def optional_time_us(self, key: str) -> int | None:
        return None if self._get(key, None) is None else self.time_us(key)

    def severity(self, key: str = "severity", allow_none: bool = True) -> Severity:
        value = self.text(key)
        for s in Severity:
            if s.label == value and (allow_none or s is not Severity.NONE):
                return s
        names = ", ".join(s.label for s in Severity if allow_none or s is not Severity.NONE)
        raise WireError(f"{self._name(key)}: expected one of {names}")

    def items(self, key: str, read: Callable[[Fields], T], default: bool = True) -> list[T]:
        """Each object of the list `key` read with `read`."""
        value = self._get(key, [] if default else _REQUIRED)
        if not isinstance(value, list):
            raise WireError(f"{self._name(key)}: expected a list")
        return [read(Fields(item, f"{self._name(key)}[{n}]")) for n, item in enumerate(value)]

    def values(self, key: str, kind: type[T], optional: bool = False) -> list[T] | None:
        """The list `key` of plain values of `kind` (None allowed when `optional`)."""
        value = self._get(key, None if optional else [])
        if value is None and optional:
            return None
        if not isinstance(value, list) or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in value
        ):
            raise WireError(f"{self._name(key)}: expected a list of {kind.__name__}")
        return value


def read_principal(f: Fields, agent: str = "") -> PrincipalKey:
    """The principal's four fields (`agent` tags it in a fleet)."""
    return PrincipalKey(
        f.text("user"),
        f.text("client_addr"),
        f.text("application_name"),
        f.text("table"),
        agent or f.text("agent", ""),
    )


def read_reason(f: Fields) -> Reason:
    return Reason(f.text("code"), f.severity(), f.integer("score", 0), f.text("detail", ""))


def _read_seen(f: Fields) -> StatementSeen:
    params = f.values("parameters", str, optional=True)
    return StatementSeen(
        f.time_us("time"),
        f.text("command", ""),
        f.optional_text("statement"),
        None if params is None else tuple(params),
        f.optional_integer("rows"),
    )


def read_reader(f: Fields, agent: str = "") -> ReaderView:
    return ReaderView(
        principal=read_principal(f, agent),
        severity=f.severity(),
        score=f.integer("score"),
        reasons=tuple(f.items("reasons", read_reason)),
        statements=f.integer("statements", 0),
        denied=f.integer("denied", 0),
        rows_hour=f.integer("rows_hour", 0),
        rows_day=f.integer("rows_day", 0),
        fraction_hour=f.optional_number("fraction_hour"),
        rows_estimated=f.flag("rows_estimated"),
        first_seen_us=f.time_us("first_seen"),
        last_seen_us=f.time_us("last_seen"),
        expected=f.optional_text("expected"),
        recent=tuple(f.values("recent", int) or ()),
        hours=tuple(f.values("hours", int) or ()),
        seen=tuple(f.items("seen", _read_seen)),
        snoozed_until_us=f.optional_time_us("snoozed_until"),
        backends=tuple(f.items("backends", read_backend)),
    )


def read_backend(f: Fields) -> Backend:
    """A reader's backend; its pid must be one (a positive int4): the dashboard signals it."""
    pid = f.integer("pid", low=1)
    if pid > PID_MAX:
        raise WireError(f"{f.path}.pid: expected a backend's process id")
    return Backend(
        pid=pid,
        user=f.text("user"),
        database=f.text("database", ""),
        client_addr=f.text("client_addr", ""),
        application_name=f.text("application_name", ""),
        state=f.text("state", ""),
        kind=f.text("kind", ""),
        tables=tuple(f.values("tables", str) or ()),
        query=f.text("query", ""),
        backend_start_us=f.time_us("backend_start"),
        xact_start_us=f.optional_time_us("xact_start"),
        query_start_us=f.optional_time_us("query_start"),
    )


def read_finding(f: Fields, agent: str = "") -> Finding:
    return Finding(
        f.time_us("time"),
        f.severity(),
        f.integer("score"),
        read_principal(f, agent),
        tuple(f.items("reasons", read_reason)),
    )


def read_source(f: Fields) -> SourceHealth:
    when = None if f.optional_text("last_event_time") is None else f.moment("last_event_time")
    return SourceHealth(
        f.text("name"),
        f.text("state"),
        f.text("detail", ""),
        when,
        f.integer("bytes_behind", 0),
        f.integer("events", 0),
        f.integer("records", 0),
        f.integer("malformed", 0),
        f.integer("forged", 0),
        f.integer("lost_bytes", 0),
        f.integer("rotations", 0),
        tuple(f.values("notes", str) or ()),
    )


def _read_delivery(f: Fields) -> Delivery:
    return Delivery(f.text("sink"), f.text("state"), f.text("detail", ""))


def read_alert(f: Fields, agent: str = "") -> AlertView:
    updated = f.optional_time_us("updated")
    return AlertView(
        key=f.text("key"),
        time_us=f.time_us("time"),
        principal=read_principal(f, agent),
        severity=f.severity(),
        summary=f.text("summary", ""),
        note=f.text("note", ""),
        operator=f.text("operator", ""),
        origin=f.text("origin", ""),
        deliveries=tuple(f.items("deliveries", _read_delivery)),
        state=f.text("state", "active"),
        findings=f.integer("findings", 1),
        suppressed=f.integer("suppressed", 0),
        updated_us=updated or 0,
        by=f.text("by", ""),
        said=f.text("said", ""),
    )


def read_event(f: Fields) -> AccessEvent:
    kind = f.text("kind", EventKind.AUDIT.value)
    try:
        event_kind = EventKind(kind)
    except ValueError:
        raise WireError(f"{f.path}.kind: unknown kind {kind[:40]!r}") from None
    params = f.values("parameters", str, optional=True)
    return AccessEvent(
        time_us=f.time_us("time"),
        kind=event_kind,
        user=f.text("user"),
        database=f.text("database", ""),
        client_addr=f.text("client_addr", ""),
        application_name=f.text("application_name", ""),
        session_id=f.text("session_id", ""),
        audit_type=f.optional_text("audit_type"),
        statement_id=f.optional_integer("statement_id"),
        substatement_id=f.optional_integer("substatement_id"),
        class_=f.text("class", ""),
        command=f.text("command", ""),
        object_type=f.text("object_type", ""),
        object_name=f.text("object_name", ""),
        statement=f.optional_text("statement"),
        parameters=None if params is None else tuple(params),
        rows=f.optional_integer("rows"),
    )


def read_snapshot(raw: object, agent: str = "") -> Snapshot:
    """A snapshot from the API's JSON; `agent` tags every principal (a fleet's dashboard).

    Raises:
        WireError: the JSON is not a snapshot.
    """
    f = Fields(raw)

    def tables(t: Fields) -> TableView:
        return TableView(t.text("name"), t.optional_integer("rows"))

    return Snapshot(
        taken_us=f.time_us("taken_at"),
        readers=tuple(f.items("readers", lambda r: read_reader(r, agent))),
        findings=tuple(f.items("findings", lambda r: read_finding(r, agent))),
        events=f.integer("events", 0),
        learning=f.flag("learning"),
        tables=tuple(f.items("tables", tables)),
        sources=tuple(f.items("sources", read_source)),
        alerts=tuple(f.items("alerts", lambda r: read_alert(r, agent))),
        tail=tuple(f.items("tail", read_event)),
        rate=f.number("rate", 0.0),
        readers_total=f.integer("readers_total", 0),
        suppressed=f.integer("suppressed", 0),
        outbox=f.integer("outbox", 0),
    )
