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
from tests.alertkit import deliver_all, make_alert, make_step
from tests.receivers import WebhookReceiver

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(SECRET) as receiver:
        yield receiver


def sink(url: str, secret: str | None = SECRET) -> Webhook:
    config = WebhookSink(url=url, secret=SecretStr(secret) if secret else None)
    return Webhook(config, host="agent-host")


async def test_signed_documents_are_accepted(hook: WebhookReceiver) -> None:
    target = sink(hook.url + "/hook")
    alert = make_alert()
    payloads = [target.render(alert, make_step(a, "bob", "n"), None) for a in Action]
    verdicts = await deliver_all(target, payloads)
    assert [v.outcome for v in verdicts] == [Outcome.SENT] * 3
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
    verdicts = await deliver_all(wrong, [payload]) + await deliver_all(unsigned, [payload])
    assert [v.outcome for v in verdicts] == [Outcome.FAILED, Outcome.FAILED]
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
    (verdict,) = await deliver_all(target, [payload])
    assert verdict.outcome is Outcome.SENT


async def test_server_errors_are_retried_and_refusals_kept(hook: WebhookReceiver) -> None:
    target = sink(hook.url + "/hook")
    payload = target.render(make_alert(), make_step(), None)
    hook.fail(500, times=3)
    hook.fail(422, body=b"unknown alert key")
    verdicts = await deliver_all(target, [payload] * 5)
    assert [v.outcome for v in verdicts] == [Outcome.RETRY] * 3 + [Outcome.FAILED, Outcome.SENT]
    assert verdicts[3].detail == "HTTP 422: unknown alert key"


async def test_a_redirect_is_not_followed(hook: WebhookReceiver) -> None:
    target = sink(hook.url + "/hook")
    hook.fail(302, headers={"Location": hook.url + "/elsewhere"})
    (verdict,) = await deliver_all(target, [target.render(make_alert(), make_step(), None)])
    assert verdict.outcome is Outcome.FAILED and verdict.detail.startswith("HTTP 302")
    assert [seen.path for seen in hook.faulted] == ["/hook"] and hook.received == []


async def test_basic_auth_credentials_in_the_url_are_never_shown(hook: WebhookReceiver) -> None:
    target = sink(hook.url.replace("http://", "http://ann:pa55word@") + "/hook")
    hook.fail(400, body=b"proxy says: no user ann:pa55word")
    (verdict,) = await deliver_all(target, [target.render(make_alert(), make_step(), None)])
    assert (verdict.outcome, verdict.detail) == (
        Outcome.FAILED,
        "HTTP 400: proxy says: no user ***",
    )
    assert hook.faulted[0].headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "127.0.0.1/hook", "http://u:pw@[::1/hook"])
async def test_a_url_no_retry_can_mend_fails_naming_the_setting(url: str) -> None:
    (verdict,) = await deliver_all(sink(url), [b"{}"])
    assert verdict.outcome is Outcome.FAILED
    assert verdict.detail.endswith(": check [alerts.webhook] url") and "pw" not in verdict.detail
