"""The Alertmanager sink's payloads: API v2 postable alerts, bounded, stable labels (pure)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.alertmanager import ALERTNAME, LABEL_CHARS, LONG_CHARS, Alertmanager, rfc3339
from core.findings import PrincipalKey, Reason, Severity
from core.settings import AlertmanagerSink
from core.sinks import Action, Alert, Step

STARTED_US = 1_795_942_800_123_456  # 2026-11-29T09:00:00.123456Z
LABEL_NAMES = {
    "alertname",
    "alert_key",
    "rule",
    "severity",
    "table",
    "user",
    "client_addr",
    "application_name",
    "instance",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def make_alert(**changes: Any) -> Alert:
    principal = changes.pop(
        "principal", PrincipalKey("mallory", "10.0.0.9", "psql", "crm.client_list")
    )
    fields: dict[str, Any] = {
        "key": "tw-0123456789abcdef0123456789abcdef",
        "rule": "critical",
        "origin": "rule",
        "severity": Severity.CRITICAL,
        "principal": principal,
        "summary": "critical: mallory read crm.client_list",
        "reasons": (
            Reason("fraction", Severity.CRITICAL, 90, "read 48000 of 50000 rows (96%)"),
            Reason("first_seen", Severity.WARNING, 50, "first seen from 10.0.0.9"),
        ),
        "started_us": STARTED_US,
        "statement": "SELECT * FROM crm.client_list WHERE id > ?",
        "findings": 3,
        "suppressed": 2,
    }
    fields.update(changes)
    return Alert(**fields)


def sink(**config: Any) -> Alertmanager:
    return Alertmanager(AlertmanagerSink(**config), host="db-host-1")


def posted(payload: bytes | None) -> dict[str, Any]:
    """The one postable alert of a payload (strict UTF-8 JSON, an array of one)."""
    assert payload is not None
    alerts = json.loads(payload.decode("utf-8"))
    assert isinstance(alerts, list) and len(alerts) == 1
    alert: dict[str, Any] = alerts[0]
    return alert


def step(action: Action, time_us: int = STARTED_US + 60_000_000, **kw: Any) -> Step:
    return Step(action, time_us, kw.pop("actor", "tablewatch"), **kw)


def test_a_trigger_is_one_postable_alert_with_fixed_labels_and_no_end() -> None:
    alert = posted(sink().render(make_alert(), step(Action.TRIGGER), None))
    assert set(alert) == {"labels", "annotations", "startsAt"}
    assert alert["labels"] == {
        "alertname": ALERTNAME,
        "alert_key": "tw-0123456789abcdef0123456789abcdef",
        "rule": "critical",
        "severity": "critical",
        "table": "crm.client_list",
        "user": "mallory",
        "client_addr": "10.0.0.9",
        "application_name": "psql",
        "instance": "db-host-1",
    }
    notes = alert["annotations"]
    assert notes["summary"] == "critical: mallory read crm.client_list"
    assert notes["description"] == (
        "fraction: read 48000 of 50000 rows (96%)\nfirst_seen: first seen from 10.0.0.9"
    )
    assert notes["statement"] == "SELECT * FROM crm.client_list WHERE id > ?"
    assert (notes["findings"], notes["suppressed"]) == ("3", "2")
    assert "acknowledged_by" not in notes


def test_times_are_rfc3339_utc_to_the_microsecond() -> None:
    alert = posted(sink().render(make_alert(), step(Action.RESOLVE), None))
    assert alert["startsAt"] == "2026-11-29T09:00:00.123456Z"
    assert alert["endsAt"] == "2026-11-29T09:01:00.123456Z"
    for value in (alert["startsAt"], alert["endsAt"]):
        assert RFC3339.match(value)
    back = datetime.fromisoformat(alert["startsAt"])
    assert back == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=STARTED_US)


def test_resolve_keeps_the_labels_and_ends_at_the_step() -> None:
    am = sink()
    trigger = am.render(make_alert(), step(Action.TRIGGER), None)
    resolve = posted(am.render(make_alert(), step(Action.RESOLVE), trigger))
    assert resolve["labels"] == posted(trigger)["labels"]
    assert resolve["endsAt"] == rfc3339(STARTED_US + 60_000_000)


def test_a_resolve_never_ends_before_it_starts() -> None:
    # Alertmanager refuses endsAt < startsAt (HTTP 400): a clock stepped back must not make the
    # resolve undeliverable for good.
    alert = posted(sink().render(make_alert(), step(Action.RESOLVE, STARTED_US - 5), None))
    assert alert["endsAt"] == alert["startsAt"]


def test_acknowledge_resends_the_firing_alert_with_who_and_why() -> None:
    am = sink()
    trigger = am.render(make_alert(), step(Action.TRIGGER), None)
    ack = posted(
        am.render(
            make_alert(),
            step(Action.ACKNOWLEDGE, actor="alice", note="looking\ninto it \x1b[2J"),
            trigger,
        )
    )
    assert "endsAt" not in ack  # still firing: Alertmanager has no acknowledged state
    assert ack["labels"] == posted(trigger)["labels"]
    assert ack["annotations"]["acknowledged_by"] == "alice"
    assert ack["annotations"]["acknowledged_note"] == "looking\ninto it \\x1b[2J"


def test_acknowledge_and_resolve_reach_the_alert_the_trigger_opened() -> None:
    # The severity rose after the trigger: a label changed now would be another Alertmanager
    # alert (another fingerprint), leaving the first one to time out.
    am = sink()
    trigger = am.render(make_alert(severity=Severity.WARNING), step(Action.TRIGGER), None)
    later = make_alert(severity=Severity.CRITICAL)
    for action in (Action.ACKNOWLEDGE, Action.RESOLVE):
        assert posted(am.render(later, step(action), trigger))["labels"]["severity"] == "warning"
    # Without a usable trigger, the labels are rendered from the alert itself.
    for junk in (None, b"", b"{}", b"[]", b'[{"labels": {"a": 1}}]'):
        labels = posted(am.render(later, step(Action.RESOLVE), junk))["labels"]
        assert labels["severity"] == "critical"


def test_hostile_values_are_bounded_escaped_and_valid_utf8() -> None:
    principal = PrincipalKey(
        "<script>\x1b[31m" + "u" * 5000,
        "10.0.0.9",
        "pg_dump\u202e\udcff",  # bidi override and a lone surrogate (undecodable byte)
        "crm.client_list",
    )
    payload = sink().render(
        make_alert(
            principal=principal,
            summary="s" * 100_000,
            statement="SELECT '\x00?' " + "x" * 2_000_000,
            note="n" * 100_000,
            reasons=(Reason("r", Severity.INFO, 10, "d\x9b" * 10_000),) * 50,
        ),
        step(Action.TRIGGER),
        None,
    )
    assert payload is not None and len(payload) < 40_000
    alert = posted(payload)
    labels = alert["labels"]
    assert set(labels) == LABEL_NAMES
    assert all(len(value) <= LABEL_CHARS for value in labels.values())
    assert labels["user"].startswith("<script>\\x1b[31muuu") and labels["user"].endswith("…")
    assert labels["application_name"] == "pg_dump\\u202e\\udcff"
    notes = alert["annotations"]
    assert all(len(value) <= LONG_CHARS for value in notes.values())
    assert notes["statement"].startswith("SELECT '\\x00?' xxx")
    assert "\x9b" not in notes["description"]


def test_empty_values_are_left_out_as_alertmanager_would_drop_them() -> None:
    alert = posted(
        sink().render(
            make_alert(principal=PrincipalKey("u", "", "", "t"), statement=None),
            step(Action.TRIGGER),
            None,
        )
    )
    assert "client_addr" not in alert["labels"] and "application_name" not in alert["labels"]
    assert "statement" not in alert["annotations"] and "note" not in alert["annotations"]
    assert all(alert["labels"].values()) and all(alert["annotations"].values())


def test_an_operator_page_carries_who_paged_and_the_note() -> None:
    alert = posted(
        sink().render(
            make_alert(rule="operator", origin="operator", operator="bob", note="call me"),
            step(Action.TRIGGER, actor="bob"),
            None,
        )
    )
    assert alert["labels"]["rule"] == "operator"
    assert alert["annotations"]["operator"] == "bob"
    assert alert["annotations"]["note"] == "call me"


def test_the_alert_host_wins_over_the_sink_host() -> None:
    alert = posted(sink().render(make_alert(host="db-9"), step(Action.TRIGGER), None))
    assert alert["labels"]["instance"] == "db-9"


def test_render_is_pure() -> None:
    am = sink()
    assert am.render(make_alert(), step(Action.TRIGGER), None) == am.render(
        make_alert(), step(Action.TRIGGER), None
    )


@pytest.mark.parametrize(("resend", "seconds"), [("1m", 60.0), ("90s", 90.0)])
def test_the_sink_contract(resend: str, seconds: float) -> None:
    am = sink(resend=resend)
    assert am.name == "alertmanager"
    assert am.limit is None
    assert am.resend_seconds == seconds
    assert am.bucket(b"[]") == ""
    assert am.aggregate([b"[]", b"[]"]) is None
