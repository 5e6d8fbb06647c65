"""The generic webhook sink against a local receiver that checks its signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from alerts.render import MAX_DOCUMENT
from alerts.webhook import Webhook
from core.settings import WebhookSink
from core.sinks import Action, Outcome
from tests.receivers import WebhookReceiver, make_alert, make_step

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(SECRET) as receiver:
        yield receiver


def sink(url: str, secret: str | None = SECRET) -> Webhook:
    config = WebhookSink(url=url, secret=SecretStr(secret) if secret else None)
    return Webhook(config, host="agent-host")


async def send(target: Webhook, payloads: list[bytes | None]) -> list[Outcome]:
    try:
        return [(await target.deliver(p)).outcome for p in payloads if p is not None]
    finally:
        await target.close()


async def test_signed_documents_are_accepted(hook: WebhookReceiver) -> None:
    target = sink(hook.url + "/hook")
    alert = make_alert()
    payloads = [target.render(alert, make_step(a, "bob", "n"), None) for a in Action]
    assert await send(target, payloads) == [Outcome.SENT] * 3
    assert hook.rejected == []
    assert [seen.headers["X-Tablewatch-Event"] for seen in hook.received] == [
        "trigger",
        "acknowledge",
        "resolve",
    ]
    first = hook.received[0]
    expected = hmac.new(SECRET.encode(), first.body, hashlib.sha256).hexdigest()
    assert first.headers["X-Tablewatch-Signature"] == f"sha256={expected}"
    assert first.body == payloads[0]  # signed over the exact bytes sent
    assert first.json["alert"]["user"] == "alice" and first.json["key"] == alert.key
    assert first.json["step"] == {
        "action": "trigger",
        "time": "2025-11-29T03:41:40.000Z",
        "actor": "bob",
        "note": "n",
    }
    assert SECRET.encode() not in b"".join(p or b"" for p in payloads)  # never stored


async def test_a_wrong_or_missing_secret_is_refused(hook: WebhookReceiver) -> None:
    wrong = sink(hook.url + "/hook", secret="not-the-secret")
    unsigned = sink(hook.url + "/hook", secret=None)
    payload = wrong.render(make_alert(), make_step(), None)
    outcomes = await send(wrong, [payload]) + await send(unsigned, [payload])
    assert outcomes == [Outcome.FAILED, Outcome.FAILED]
    assert [r.reason for r in hook.rejected] == ["bad signature", "bad signature"]
    assert "X-Tablewatch-Signature" not in hook.rejected[1].headers
    assert hook.received == []


async def test_a_huge_statement_stays_under_1_mb(hook: WebhookReceiver) -> None:
    target = sink(hook.url + "/hook")
    alert = make_alert(
        statement="SELECT " + "x, " * 700_000, user="u" * 5000, application_name="\U0001f600" * 5000
    )
    payload = target.render(alert, make_step(), None)
    assert payload is not None and len(payload) <= MAX_DOCUMENT
    assert json.loads(payload)["alert"]["statement"].endswith("…")
    assert await send(target, [payload]) == [Outcome.SENT]


async def test_server_errors_are_retried_and_refusals_kept(hook: WebhookReceiver) -> None:
    target = sink(hook.url + "/hook")
    payload = target.render(make_alert(), make_step(), None)
    hook.fail(500, times=3)
    hook.fail(422, body=b"unknown alert key")
    verdicts = []
    try:
        for _ in range(5):
            verdicts.append(await target.deliver(payload or b""))
    finally:
        await target.close()
    assert [v.outcome for v in verdicts] == [Outcome.RETRY] * 3 + [Outcome.FAILED, Outcome.SENT]
    assert verdicts[3].detail == "HTTP 422: unknown alert key"


async def test_a_redirect_is_not_followed(hook: WebhookReceiver) -> None:
    target = sink(hook.url + "/hook")
    hook.fail(302, headers={"Location": hook.url + "/elsewhere"})
    verdict = await target.deliver(target.render(make_alert(), make_step(), None) or b"")
    await target.close()
    assert verdict.outcome is Outcome.FAILED and verdict.detail.startswith("HTTP 302")
    assert [seen.path for seen in hook.faulted] == ["/hook"] and hook.received == []
