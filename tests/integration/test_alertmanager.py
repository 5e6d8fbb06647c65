"""The Alertmanager sink against a real, private Alertmanager 0.25 (tests/alertmanager.py).

What the server does with what we post is read back through its own API (GET /api/v2/alerts)
and through the notifications it sends to our webhook receiver. Each test works on its own
alert (its own principal, hence its own `alert_key` and notification group).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest

from alerts.alertmanager import LABEL_CHARS, LONG_CHARS, Alertmanager
from core.findings import PrincipalKey, Reason, Severity
from core.settings import AlertmanagerSink
from core.sinks import Action, Alert, Outcome, Step
from core.snapshot import AlertView
from tablewatch.pgcluster import free_port
from tests.alertkit import deliver_all
from tests.alertmanager import AlertmanagerServer, WebhookReceiver, require_alertmanager


@pytest.fixture(scope="module")
def alertmanager() -> Iterator[AlertmanagerServer]:
    """One Alertmanager for the module; stopped (and its directory removed) at the end."""
    require_alertmanager()
    with AlertmanagerServer() as server:
        yield server


@pytest.fixture
def webhook(alertmanager: AlertmanagerServer) -> WebhookReceiver:
    assert alertmanager.webhook is not None
    return alertmanager.webhook


@pytest.fixture
async def sink(alertmanager: AlertmanagerServer) -> AsyncIterator[Alertmanager]:
    am = Alertmanager(AlertmanagerSink(url=alertmanager.url + "/"), host="db-host-1")
    yield am
    await am.close()


def now_us() -> int:
    return time.time_ns() // 1000


def make_alert(user: str | None = None, **changes: Any) -> Alert:
    principal = PrincipalKey(
        user or f"mallory-{uuid.uuid4().hex[:8]}", "10.0.0.9", "psql", "crm.client_list"
    )
    fields: dict[str, Any] = {
        "key": AlertView.key_for("critical", principal),
        "rule": "critical",
        "origin": "rule",
        "severity": Severity.CRITICAL,
        "principal": principal,
        "summary": f"critical: {principal.user} read crm.client_list",
        "reasons": (Reason("fraction", Severity.CRITICAL, 90, "read 48000 of 50000 rows"),),
        "started_us": now_us() - 1_000_000,
        "statement": "SELECT * FROM crm.client_list",
        "findings": 2,
    }
    fields.update(changes)
    return Alert(**fields)


async def send(sink: Alertmanager, alert: Alert, action: Action, trigger: bytes | None) -> bytes:
    """Render and deliver one action; the payload (the server must have taken it)."""
    payload = sink.render(alert, Step(action, now_us(), "alice", note="on it"), trigger)
    assert payload is not None
    verdict = await sink.deliver(payload)
    assert verdict.outcome is Outcome.SENT, verdict
    return payload


async def stored(server: AlertmanagerServer, key: str) -> list[dict[str, Any]]:
    return await server.alerts(filter=f'alert_key="{key}"')


def about(key: str, status: str) -> Any:
    """A webhook notification about the alert `key` in `status` (firing, resolved)."""

    def match(note: dict[str, Any]) -> bool:
        return any(
            a["labels"].get("alert_key") == key and a["status"] == status for a in note["alerts"]
        )

    return match


async def test_a_trigger_is_stored_active_with_our_labels_and_annotations(
    alertmanager: AlertmanagerServer, sink: Alertmanager
) -> None:
    alert = make_alert()
    await send(sink, alert, Action.TRIGGER, None)
    [got] = await stored(alertmanager, alert.key)
    assert got["status"]["state"] == "active"
    assert got["labels"] == {
        "alertname": "TablewatchReader",
        "alert_key": alert.key,
        "rule": "critical",
        "severity": "critical",
        "table": "crm.client_list",
        "user": alert.principal.user,
        "client_addr": "10.0.0.9",
        "application_name": "psql",
        "instance": "db-host-1",
    }
    assert got["annotations"]["summary"] == alert.summary
    assert got["annotations"]["description"] == "fraction: read 48000 of 50000 rows"
    assert got["annotations"]["statement"] == "SELECT * FROM crm.client_list"
    assert got["annotations"]["findings"] == "2"
    # Alertmanager keeps milliseconds; with no endsAt it ends the alert resolve_timeout (5m)
    # after it last heard of it, unless it is re-sent.
    starts = datetime.fromisoformat(got["startsAt"]).timestamp()
    assert abs(starts - alert.started_us / 1e6) < 0.001
    ends = datetime.fromisoformat(got["endsAt"]).timestamp()
    assert 4 * 60 < ends - time.time() <= 5 * 60


async def test_re_sends_stay_one_alert(
    alertmanager: AlertmanagerServer, sink: Alertmanager
) -> None:
    alert = make_alert()
    trigger = await send(sink, alert, Action.TRIGGER, None)
    [first] = await stored(alertmanager, alert.key)
    for _ in range(2):
        assert (await sink.deliver(trigger)).outcome is Outcome.SENT
    [again] = await stored(alertmanager, alert.key)
    assert again["fingerprint"] == first["fingerprint"]
    assert again["startsAt"] == first["startsAt"]
    assert again["updatedAt"] >= first["updatedAt"]  # the re-send pushed its end further out
    assert again["endsAt"] >= first["endsAt"]


async def test_trigger_acknowledge_resolve_through_alertmanager(
    alertmanager: AlertmanagerServer, sink: Alertmanager, webhook: WebhookReceiver
) -> None:
    alert = make_alert()
    trigger = await send(sink, alert, Action.TRIGGER, None)
    firing = await webhook.wait_for(about(alert.key, "firing"))
    [notified] = firing["alerts"]
    assert notified["labels"]["user"] == alert.principal.user
    assert notified["labels"]["severity"] == "critical"
    assert firing["groupLabels"] == {"alert_key": alert.key}

    await send(sink, alert, Action.ACKNOWLEDGE, trigger)
    [acked] = await stored(alertmanager, alert.key)
    assert acked["status"]["state"] == "active"  # Alertmanager has no acknowledged state
    assert acked["annotations"]["acknowledged_by"] == "alice"
    assert acked["annotations"]["acknowledged_note"] == "on it"

    await send(sink, alert, Action.RESOLVE, trigger)
    # Alertmanager 0.25 lists no resolved alert, whatever the filters: it is simply gone.
    assert await stored(alertmanager, alert.key) == []
    for flags in ({"active": "false"}, {"active": "true", "unprocessed": "true"}):
        assert await alertmanager.alerts(filter=f'alert_key="{alert.key}"', **flags) == []
    resolved = await webhook.wait_for(about(alert.key, "resolved"))
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["labels"] == notified["labels"]
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"


async def test_hostile_values_are_accepted_and_come_back_bounded(
    alertmanager: AlertmanagerServer, sink: Alertmanager
) -> None:
    user = "<script>\x1b[31m" + "u" * 5000 + uuid.uuid4().hex
    alert = make_alert(
        user,
        summary="x" * 100_000,
        statement="SELECT * FROM crm.client_list WHERE note = '?'\n" + "-- x\n" * 400_000,
    )
    assert alert.statement is not None and len(alert.statement) > 2_000_000
    await send(sink, alert, Action.TRIGGER, None)
    [got] = await stored(alertmanager, alert.key)
    assert got["labels"]["user"].startswith("<script>\\x1b[31muuu")
    assert all(len(v) <= LABEL_CHARS for v in got["labels"].values())
    assert all(len(v) <= LONG_CHARS for v in got["annotations"].values())
    assert "\x1b" not in str(got)


async def test_an_invalid_alert_is_refused_for_good_with_the_reason(
    alertmanager: AlertmanagerServer, sink: Alertmanager
) -> None:
    bad_label = await sink.deliver(b'[{"labels": {"bad-name": "x"}}]')
    assert bad_label.outcome is Outcome.FAILED
    assert bad_label.detail.startswith("HTTP 400") and "invalid label set" in bad_label.detail

    backwards = (
        b'[{"labels": {"alertname": "x"}, "startsAt": "2026-01-02T00:00:00Z",'
        b' "endsAt": "2026-01-01T00:00:00Z"}]'
    )
    verdict = await sink.deliver(backwards)
    assert verdict.outcome is Outcome.FAILED
    assert "start time must be before end time" in verdict.detail

    not_json = await sink.deliver(b"not json")
    assert not_json.outcome is Outcome.FAILED and "HTTP 400" in not_json.detail


async def test_a_wrong_path_is_refused(alertmanager: AlertmanagerServer) -> None:
    sink = Alertmanager(AlertmanagerSink(url=alertmanager.url + "/nope"), host="h")
    payload = sink.render(make_alert(), Step(Action.TRIGGER, now_us(), "t"), None)
    (verdict,) = await deliver_all(sink, [payload])
    assert verdict.outcome is Outcome.FAILED and verdict.detail.startswith("HTTP 404")


async def test_a_closed_port_is_retried_later() -> None:
    sink = Alertmanager(
        AlertmanagerSink(url=f"http://127.0.0.1:{free_port()}", timeout="2s"), host="h"
    )
    (verdict,) = await deliver_all(sink, [b"[]"])
    assert verdict.outcome is Outcome.RETRY
    assert "ClientConnectorError" in verdict.detail or "Connect" in verdict.detail


@pytest.mark.parametrize("url", ["127.0.0.1:9093", "ftp://127.0.0.1", "http://u:secret@[::1"])
async def test_a_malformed_url_fails_without_echoing_it(url: str) -> None:
    (verdict,) = await deliver_all(Alertmanager(AlertmanagerSink(url=url), host="h"), [b"[]"])
    assert verdict.outcome is Outcome.FAILED  # retrying cannot mend the settings
    assert "url" in verdict.detail and "secret" not in verdict.detail
