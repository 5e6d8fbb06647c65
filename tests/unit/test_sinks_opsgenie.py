"""The Opsgenie sink against a local Alert API receiver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.opsgenie import Opsgenie
from core.findings import Severity
from core.settings import OpsgenieSink
from core.sinks import Action, Outcome
from tests.alertkit import HOSTILE, deliver_all, lifecycle, make_alert, make_step
from tests.receivers import OpsgenieReceiver

API_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"


@pytest.fixture
async def og() -> AsyncIterator[OpsgenieReceiver]:
    async with OpsgenieReceiver(API_KEY) as receiver:
        yield receiver


def sink(url: str = "https://api.opsgenie.com/v2/alerts", key: str = API_KEY) -> Opsgenie:
    return Opsgenie(OpsgenieSink(url=url, api_key=SecretStr(key)), host="agent-host")


def envelope(payload: bytes | None) -> dict[str, Any]:
    assert payload is not None
    parsed: dict[str, Any] = json.loads(payload.decode("utf-8"))
    assert set(parsed) == {"path", "body"}
    return parsed


async def test_create_acknowledge_close_by_alias(og: OpsgenieReceiver) -> None:
    target = sink(og.url + "/v2/alerts")
    alert = make_alert(key="critical|al/ice?|10.0.0.5|psql|crm.client_list")  # needs quoting
    verdicts = await deliver_all(target, lifecycle(target, alert))
    assert [v.outcome for v in verdicts] == [Outcome.SENT] * 3
    assert og.rejected == []
    create, ack, close = og.received
    assert create.path == "/v2/alerts"
    assert ack.path == f"/v2/alerts/{alert.key}/acknowledge"  # decoded: the alias itself
    assert close.path == f"/v2/alerts/{alert.key}/close"
    assert "%2F" in ack.raw_path and "?" not in ack.raw_path  # the alias's "/" and "?" quoted
    assert ack.query == close.query == {"identifierType": "alias"}
    assert ack.json == {"user": "bob", "source": "tablewatch@agent-host", "note": "on it"}
    body = create.json
    assert body["alias"] == alert.key and body["priority"] == "P1"
    assert body["tags"] == ["tablewatch", "critical"] and body["entity"] == "crm.client_list"
    assert body["details"]["user"] == "alice" and body["details"]["reasons"] == "volume, bulk_read"
    assert "SELECT * FROM crm.client_list" in body["description"]
    assert create.headers["Authorization"] == f"GenieKey {API_KEY}"


@pytest.mark.parametrize(
    ("severity", "priority"),
    [(Severity.CRITICAL, "P1"), (Severity.WARNING, "P3"), (Severity.INFO, "P5")],
)
def test_priority_mapping(severity: Severity, priority: str) -> None:
    body = envelope(sink().render(make_alert(severity=severity), make_step(), None))["body"]
    assert body["priority"] == priority and body["tags"][1] == severity.label


async def test_huge_and_hostile_fields_stay_within_limits(og: OpsgenieReceiver) -> None:
    alert = make_alert(
        key="k" * 2000,
        user=HOSTILE + "u" * 5000,
        application_name="a" * 5000,
        table="t" * 5000,
        statement="SELECT " + "x, " * 700_000,
        summary="s" * 5000,
        note="n" * 50_000,
    )
    target = sink(og.url + "/v2/alerts")
    step = make_step(Action.TRIGGER, "o" * 500, "n" * 50_000)
    trigger = target.render(alert, step, None)
    body = envelope(trigger)["body"]
    assert len(body["message"]) <= 130 and len(body["alias"]) <= 512
    assert len(body["description"]) <= 15_000 and len(body["user"]) <= 100
    assert sum(len(k) + len(v) for k, v in body["details"].items()) <= 8000
    resolve = target.render(alert, make_step(Action.RESOLVE, "o" * 500, "n" * 50_000), trigger)
    verdicts = await deliver_all(target, [trigger, resolve])
    assert [v.outcome for v in verdicts] == [Outcome.SENT] * 2
    assert og.rejected == []
    assert og.received[1].path == f"/v2/alerts/{body['alias']}/close"


async def test_a_wrong_key_is_refused_and_not_shown(og: OpsgenieReceiver) -> None:
    target = sink(og.url + "/v2/alerts", key="wrong-key-0000")
    (verdict,) = await deliver_all(target, [target.render(make_alert(), make_step(), None)])
    assert verdict.outcome is Outcome.FAILED and "HTTP 401" in verdict.detail
    assert og.rejected[0].reason == "Could not authenticate"
    assert "wrong-key" not in verdict.detail


async def test_retries_then_takes(og: OpsgenieReceiver) -> None:
    target = sink(og.url + "/v2/alerts")
    payload = target.render(make_alert(), make_step(), None)
    og.fail(503, times=2)
    og.fail(429, headers={"Retry-After": "7"})
    verdicts = await deliver_all(target, [payload] * 4)
    assert [v.outcome for v in verdicts] == [Outcome.RETRY] * 3 + [Outcome.SENT]
    assert verdicts[2].retry_after == 7.0
    assert len(og.received) == 1 and len(og.faulted) == 3


async def test_a_foreign_payload_fails_without_raising() -> None:
    (verdict,) = await deliver_all(sink(), [b'{"message": "not an envelope"}'])
    assert verdict.outcome is Outcome.FAILED and "envelope" in verdict.detail
