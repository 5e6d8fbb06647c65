"""The PagerDuty sink against a local Events API v2 receiver that checks the public schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.pagerduty import MAX_EVENT, PagerDuty
from core.findings import Reason, Severity
from core.settings import PagerDutySink
from core.sinks import Action, Outcome, RateLimit
from tablewatch.pgcluster import free_port
from tests.alertkit import HOSTILE, deliver_all, lifecycle, make_alert, make_step
from tests.receivers import PagerDutyReceiver

KEY_A = "R0UTINGKEYAAAAAAAAAAAAAAAAAAAAAA"
KEY_B = "R0UTINGKEYBBBBBBBBBBBBBBBBBBBBBB"


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutyReceiver]:
    async with PagerDutyReceiver() as receiver:
        yield receiver


def sink(
    url: str = "http://127.0.0.1:9/v2/enqueue", key: str | None = KEY_A, **kw: Any
) -> PagerDuty:
    config = PagerDutySink(url=url, routing_key=SecretStr(key) if key else None, **kw)
    return PagerDuty(config, host="agent-host")


def event(payload: bytes | None) -> dict[str, Any]:
    assert payload is not None
    parsed: dict[str, Any] = json.loads(payload.decode("utf-8"))
    return parsed


async def test_trigger_acknowledge_resolve_are_accepted(pd: PagerDutyReceiver) -> None:
    pagerduty = sink(pd.url + "/v2/enqueue", component="crm-db")
    alert = make_alert()
    verdicts = await deliver_all(pagerduty, lifecycle(pagerduty, alert))
    assert [v.outcome for v in verdicts] == [Outcome.SENT] * 3, verdicts
    assert pd.rejected == []
    sent = [seen.json for seen in pd.received]
    assert [e["event_action"] for e in sent] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in sent} == {alert.key}
    assert set(sent[1]) == {"routing_key", "event_action", "dedup_key"}
    body = sent[0]["payload"]
    assert body["severity"] == "critical" and body["source"] == "db1.example"
    assert body["component"] == "crm-db" and body["group"] == "crm.client_list"
    assert body["class"] == "bulk_read"  # the weightiest reason, not the first
    assert body["timestamp"] == "2025-11-29T03:41:40.000Z"
    details = body["custom_details"]
    assert details["user"] == "alice" and details["statement"] == alert.statement
    assert details["reasons"][1] == {"code": "bulk_read", "detail": alert.reasons[1].detail}
    assert pd.received[0].headers["Content-Type"] == "application/json"
    assert sent[0]["client"] == "tablewatch"


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(Severity.CRITICAL, "critical"), (Severity.WARNING, "warning"), (Severity.INFO, "info")],
)
def test_severity_mapping(severity: Severity, expected: str) -> None:
    payload = event(sink().render(make_alert(severity=severity), make_step(), None))
    assert payload["payload"]["severity"] == expected


def test_ack_and_resolve_keep_the_triggers_routing_key() -> None:
    alert = make_alert()
    trigger = sink(key=KEY_A).render(alert, make_step(), None)
    rebuilt = sink(key=KEY_B)  # the key was rotated in settings since the trigger
    for action in (Action.ACKNOWLEDGE, Action.RESOLVE):
        assert event(rebuilt.render(alert, make_step(action), trigger))["routing_key"] == KEY_A
        assert event(rebuilt.render(alert, make_step(action), None))["routing_key"] == KEY_B
    without = sink(key=None)
    assert without.render(alert, make_step(), None) is None
    assert without.render(alert, make_step(Action.RESOLVE), None) is None
    assert event(without.render(alert, make_step(Action.RESOLVE), trigger))["routing_key"] == KEY_A


def test_long_keys_stay_unique_within_255() -> None:
    pagerduty = sink()
    one, two = make_alert(key="k" * 600 + "1"), make_alert(key="k" * 600 + "2")
    keys = [event(pagerduty.render(a, make_step(), None))["dedup_key"] for a in (one, two)]
    assert all(isinstance(k, str) and len(k) <= 255 for k in keys)
    assert keys[0] != keys[1]
    trigger = pagerduty.render(one, make_step(), None)
    assert event(pagerduty.render(one, make_step(Action.RESOLVE), None))["dedup_key"] == keys[0]
    assert event(pagerduty.render(one, make_step(Action.RESOLVE), trigger))["dedup_key"] == keys[0]


async def test_huge_and_hostile_fields_give_a_valid_event(pd: PagerDutyReceiver) -> None:
    alert = make_alert(
        user=HOSTILE + "u" * 5000,
        application_name="a" * 5000,
        statement="SELECT " + "x, " * 700_000,  # 2 MB
        summary="s" * 5000,
    )
    pagerduty = sink(pd.url + "/v2/enqueue")
    payload = pagerduty.render(alert, make_step(), None)
    assert payload is not None and len(payload) <= MAX_EVENT
    body = event(payload)["payload"]
    assert len(body["summary"]) <= 1024
    assert len(body["custom_details"]["user"]) <= 256
    (verdict,) = await deliver_all(pagerduty, [payload])
    assert verdict.outcome is Outcome.SENT and pd.rejected == []


def test_every_field_at_its_bound_still_fits_512_kb() -> None:
    astral = "\U0001f600" * 20_000  # 12 bytes each once escaped: the worst case per character
    reasons = tuple(Reason(astral[:100], Severity.CRITICAL, 90, astral) for i in range(50))
    alert = make_alert(
        key=astral,
        user=astral,
        client_addr=astral,
        application_name=astral,
        table=astral,
        summary=astral,
        statement=astral,
        reasons=reasons,
        note=astral,
        operator=astral,
    )
    payload = sink().render(alert, make_step(Action.TRIGGER, astral, astral), None)
    assert payload is not None and len(payload) <= MAX_EVENT
    parsed = event(payload)
    details = parsed["payload"]["custom_details"]
    assert len(details["statement"]) <= 16_000 and len(str(parsed["dedup_key"])) <= 255
    assert details["reasons_not_listed"] == 50 - len(details["reasons"]) > 0


def triggers(count: int, key: str = KEY_A, worst_at: int = 3) -> list[bytes]:
    pagerduty = sink(key=key)
    out = []
    for i in range(count):
        severity = Severity.CRITICAL if i == worst_at else Severity.WARNING
        payload = pagerduty.render(
            make_alert(key=f"k{i}|" + "z" * 200, severity=severity), make_step(), None
        )
        assert payload is not None
        out.append(payload)
    return out


async def test_aggregate_of_10000_is_exact_and_bounded(pd: PagerDutyReceiver) -> None:
    payloads = triggers(10_000, worst_at=9_999)
    pagerduty = sink(pd.url + "/v2/enqueue")
    combined = pagerduty.aggregate(payloads)
    assert combined is not None and len(combined) <= MAX_EVENT
    assert combined == pagerduty.aggregate(payloads)  # a retry renders the same event
    parsed = event(combined)
    body = parsed["payload"]
    details = body["custom_details"]
    assert details["count"] == 10_000
    assert 0 < len(details["alerts"]) < 10_000
    assert details["not_listed"] == 10_000 - len(details["alerts"])
    assert details["alerts"][0]["dedup_key"] == "k0|" + "z" * 200
    assert body["severity"] == "critical"
    assert "10000 alerts held back" in body["summary"]
    assert str(parsed["dedup_key"]).startswith("tw-aggregate-")
    assert parsed["routing_key"] == KEY_A
    (verdict,) = await deliver_all(pagerduty, [combined])
    assert verdict.outcome is Outcome.SENT and pd.rejected == []


def test_aggregate_lists_everything_when_it_fits_and_refuses_mixed_keys() -> None:
    small = sink().aggregate(triggers(5, worst_at=99))
    details = event(small)["payload"]["custom_details"]
    assert (details["count"], details["not_listed"], len(details["alerts"])) == (5, 0, 5)
    assert event(small)["payload"]["severity"] == "warning"
    assert sink().aggregate(triggers(2) + triggers(2, key=KEY_B)) is None


def test_limit_and_bucket_never_show_the_key() -> None:
    pagerduty = sink()
    assert pagerduty.limit == RateLimit(120, 60.0) and pagerduty.resend_seconds is None
    a, b = triggers(1)[0], triggers(1, key=KEY_B)[0]
    assert pagerduty.bucket(a) != pagerduty.bucket(b)
    assert pagerduty.bucket(a) == pagerduty.bucket(triggers(2)[1])
    assert KEY_A not in pagerduty.bucket(a) and KEY_A[:8] not in pagerduty.bucket(a)


async def test_http_answers_become_verdicts(pd: PagerDutyReceiver) -> None:
    pagerduty = sink(pd.url + "/v2/enqueue", timeout=timedelta(seconds=0.5))
    payload = pagerduty.render(make_alert(), make_step(), None)
    assert payload is not None
    pd.fail(500, times=3)
    pd.fail(429, headers={"Retry-After": "7"})
    pd.fail(400, body=b'{"status":"invalid event","errors":["routing key"]}')
    pd.stall(2.0)
    verdicts = await deliver_all(pagerduty, [payload] * 7)
    assert [v.outcome for v in verdicts[:3]] == [Outcome.RETRY] * 3
    assert (verdicts[3].outcome, verdicts[3].retry_after) == (Outcome.RETRY, 7.0)
    assert verdicts[4].outcome is Outcome.FAILED and "routing key" in verdicts[4].detail
    assert verdicts[5].outcome is Outcome.RETRY and "timed out after 0.5s" in verdicts[5].detail
    assert verdicts[6].outcome is Outcome.SENT
    assert KEY_A not in "".join(v.detail for v in verdicts)


async def test_closed_port_is_a_retry() -> None:
    pagerduty = sink(f"http://127.0.0.1:{free_port()}/v2/enqueue")  # nobody listens
    (verdict,) = await deliver_all(pagerduty, triggers(1))
    assert verdict.outcome is Outcome.RETRY and verdict.detail
