"""The agent API's JSON: a snapshot survives the trip to a remote dashboard intact (hostile texts
included), large texts are bounded, and JSON that is not a snapshot is refused naming the field."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import msgspec
import pytest

from core.dbside import Backend
from core.events import AccessEvent, EventKind
from core.findings import Finding, PrincipalKey, Reason, Severity
from core.snapshot import AlertView, Delivery, ReaderView, Snapshot, StatementSeen, TableView
from core.sources import SourceHealth
from tablewatch.wire import (
    BACKENDS,
    PARAMETER_CHARS,
    PARAMETERS,
    STATEMENT_CHARS,
    WireError,
    encode,
    read_snapshot,
    snapshot_json,
)
from tests.alertkit import HOSTILE

T = 1_764_387_664_994_123
EVIL = HOSTILE.replace("\udcff", "") + '[bold]x[/] \x1b]8;;http://e\x07 \n\t"'
P = PrincipalKey(EVIL, "10.0.0.9", EVIL, "crm.client_list")


def _snapshot(statement: str = "SELECT * FROM crm.client_list") -> Snapshot:
    reason = Reason("bulk_read", Severity.CRITICAL, 97, f"read 50,000 rows; {EVIL}")
    seen = StatementSeen(T, "SELECT", statement, ("1", EVIL), 50_000)
    copying = Backend(
        4242, EVIL, "crm", "10.0.0.9", EVIL, "active", "copy", ("crm.client_list",), statement,
        T - 300_000_000, T - 123_000_000, T - 123_000_000,
    )  # fmt: skip
    idle = Backend(4243, "app", "", "", "", "idle in transaction", "cursor", (), "", T, None, None)
    reader = ReaderView(
        P, Severity.CRITICAL, 97, (reason,), 3, 1, 50_000, 50_000, 1.0, False, T - 10, T,
        EVIL, recent=(0, 5, 50_000), hours=(1,) * 24, seen=(seen,), snoozed_until_us=T + 600,
        backends=(copying, idle),
    )  # fmt: skip
    quiet = ReaderView(
        PrincipalKey("app", "", "", "crm.client_list"), Severity.NONE, 0, (), 1, 0, 1, 1, None,
        True, T, T, None,
    )  # fmt: skip
    event = AccessEvent(
        T, EventKind.AUDIT, EVIL, "crm", "10.0.0.9", EVIL, "s1", "OBJECT", 7, 1, "READ",
        "SELECT", "TABLE", "crm.client_list", statement, None, None,
    )  # fmt: skip
    alert = AlertView(
        "tw-" + "a" * 32, T, P, Severity.CRITICAL, f"critical: {EVIL}", EVIL, "ann", "operator",
        (Delivery("pagerduty", "failed", f"HTTP 400 {EVIL}"),), "acknowledged", 2, 5, T + 1, "bo",
        f"on it {EVIL}",
    )  # fmt: skip
    return Snapshot(
        T, (reader, quiet), (Finding(T, Severity.CRITICAL, 97, P, (reason,)),), 42, True,
        (TableView("crm.client_list", 50_000), TableView("crm.orders", None)),
        (SourceHealth("audit_log", "ok", EVIL, datetime(2026, 11, 29, 3, 0, tzinfo=UTC), 12, 42,
                      50, 1, 0, 0, 2, ("rotated",)),),
        (alert,), (event,), 12.5, 2, 7, 3,
    )  # fmt: skip


def _trip(snap: Snapshot, agent: str = "") -> Snapshot:
    return read_snapshot(msgspec.json.decode(encode(snapshot_json(snap, "db1"))), agent)


def test_a_snapshot_comes_back_as_it_left() -> None:
    snap = _snapshot()
    assert _trip(snap) == snap


def test_the_contract_keys() -> None:
    body = snapshot_json(_snapshot(), "db1")
    assert body["taken_at"] == "2025-11-29T03:41:04.994123+00:00"
    reader = body["readers"][0]
    assert [*reader][:8] == [
        "user", "client_addr", "application_name", "table", "severity", "score", "reasons",
        "statements",
    ]  # fmt: skip
    assert reader["reasons"][0]["code"] == "bulk_read"
    assert {"findings", "sources", "alerts", "agent"} <= body.keys()


def test_a_fleet_tags_every_principal_with_its_agent() -> None:
    back = _trip(_snapshot(), agent="east")
    assert {r.principal.agent for r in back.readers} == {"east"}
    assert back.findings[0].principal.agent == back.alerts[0].principal.agent == "east"


def test_large_texts_are_bounded() -> None:
    huge = "SELECT " + "x" * 2_000_000
    snap = _snapshot(huge)
    reader = snap.readers[0]
    many = StatementSeen(T, "BIND", "SELECT 1", tuple("p" * 10_000 for _ in range(500)), 1)
    snap = replace(snap, readers=(replace(reader, seen=(many,)),))
    body = encode(snapshot_json(snap, "db1"))
    assert len(body) < 200_000
    back = _trip(snap)
    assert len(back.tail[0].statement or "") == STATEMENT_CHARS
    params = back.readers[0].seen[0].parameters or ()
    assert len(params) == PARAMETERS + 1 and params[-1].endswith(f"{500 - PARAMETERS} more")
    assert all(len(p) <= PARAMETER_CHARS for p in params)


def test_a_readers_backends_are_bounded() -> None:
    snap = _snapshot("COPY crm.client_list TO STDOUT /* " + "x" * 2_000_000 + " */")
    reader = snap.readers[0]
    many = tuple(replace(reader.backends[0], pid=1000 + n) for n in range(500))
    snap = replace(snap, readers=(replace(reader, backends=many),))
    assert len(encode(snapshot_json(snap, "db1"))) < 200_000
    back = _trip(snap).readers[0].backends
    assert [b.pid for b in back] == list(range(1000, 1000 + BACKENDS))
    assert all(len(b.query) == STATEMENT_CHARS and b.query.endswith("…") for b in back)


def test_a_lone_surrogate_does_not_break_the_answer() -> None:
    snap = _snapshot()
    odd = replace(snap, tables=(TableView("crm.\udcffx", 1),))
    assert _trip(odd).tables[0].name == "crm.\ufffdx"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda b: b.pop("taken_at"), "taken_at: missing"),
        (lambda b: b.update(readers={}), "readers: expected a list"),
        (lambda b: b["readers"][1].update(score="9"), "readers[1].score: expected an integer"),
        (lambda b: b["readers"][0].update(severity="doom"), "readers[0].severity: expected one"),
        (lambda b: b["readers"][0].update(first_seen="yesterday"), "not an ISO 8601 time"),
        (lambda b: b["readers"][0].update(last_seen="2026-11-29T03:00:00"), "needs its offset"),
        (lambda b: b["alerts"][0]["deliveries"][0].pop("sink"), "deliveries[0].sink: missing"),
        (lambda b: b["tail"][0].update(kind="?"), "tail[0].kind: unknown kind"),
        (lambda b: b["readers"][0].update(recent=[1, True]), "recent: expected a list of int"),
        (lambda b: b["sources"][0].update(events=-1), "sources[0].events: expected 0 or more"),
        (
            lambda b: b["readers"][0]["backends"][1].update(pid="4243"),
            "backends[1].pid: expected an",
        ),
        (lambda b: b["readers"][0]["backends"][0].update(pid=0), "backends[0].pid: expected 1 or"),
        (
            lambda b: b["readers"][0]["backends"][0].update(pid=2**31),
            "readers[0].backends[0].pid: expected a backend's process id",
        ),
        (lambda b: b["readers"][0]["backends"][0].pop("user"), "backends[0].user: missing"),
        (lambda b: b["readers"][0]["backends"][0].update(tables=[1]), "tables: expected a list"),
        (
            lambda b: b["readers"][0]["backends"][0].update(query_start="now"),
            "readers[0].backends[0].query_start: not an ISO 8601 time",
        ),
        (lambda b: b["readers"][0].update(backends={}), "readers[0].backends: expected a list"),
    ],
)
def test_what_is_not_a_snapshot_is_refused_naming_the_field(change: object, error: str) -> None:
    body = msgspec.json.decode(encode(snapshot_json(_snapshot(), "db1")))
    change(body)  # type: ignore[operator]
    with pytest.raises(WireError, match=error.replace("[", r"\[").replace("]", r"\]")):
        read_snapshot(body)


def test_unknown_keys_are_ignored() -> None:
    body = msgspec.json.decode(encode(snapshot_json(_snapshot(), "db1")))
    body["from_the_future"] = {"x": 1}
    body["readers"][0]["new_signal"] = 3
    assert read_snapshot(body) == _snapshot()


def test_texts_of_control_characters_stay_within_budget() -> None:
    """Each escape character takes six bytes in JSON: a statement made of them is cut harder."""
    nasty = "\x1b" * 100_000
    seen = StatementSeen(T, "SELECT", nasty, tuple(nasty for _ in range(1_000)), 1)
    snap = _snapshot(nasty)
    snap = replace(snap, readers=(replace(snap.readers[0], seen=(seen,) * 8),) * 200)
    body = encode(snapshot_json(snap, "db1"))
    per_statement = 2 * (STATEMENT_CHARS + (PARAMETERS + 1) * PARAMETER_CHARS)
    assert len(body) < 1_700 * per_statement  # 1,600 statements seen, 1 in the tail
    back = _trip(snap)
    assert back.readers[0].seen[0].statement is not None
    assert back.readers[0].seen[0].statement.startswith("\x1b" * 100)
