"""The Slack sink against a local incoming-webhook receiver."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.slack import Slack, escape
from core.settings import SlackSink
from core.sinks import Action, Outcome, RateLimit
from tablewatch.pgcluster import free_port
from tests.alertkit import HOSTILE, deliver_all, lifecycle, make_alert, make_step
from tests.receivers import SlackReceiver


@pytest.fixture
async def slack() -> AsyncIterator[SlackReceiver]:
    async with SlackReceiver() as receiver:
        yield receiver


def sink(url: str) -> Slack:
    return Slack(SlackSink(webhook_url=SecretStr(url)), host="agent-host")


def texts(payload: bytes | None) -> list[str]:
    """The fallback text and every block's text."""
    assert payload is not None
    message: dict[str, Any] = json.loads(payload.decode("utf-8"))
    return [message["text"]] + [block["text"]["text"] for block in message["blocks"]]


async def test_trigger_acknowledge_resolve_are_accepted(slack: SlackReceiver) -> None:
    target = sink(slack.webhook_url)
    alert = make_alert()
    payloads = lifecycle(target, alert)
    verdicts = await deliver_all(target, payloads)
    assert [v.outcome for v in verdicts] == [Outcome.SENT] * 3
    assert slack.rejected == [] and len(slack.received) == 3
    shown = "\n".join(texts(payloads[0]))
    assert "CRITICAL" in shown and "`alice`" in shown and "`crm.client_list`" in shown
    assert "one statement read 48,000 of 50,000 rows" in shown
    assert "```SELECT * FROM crm.client_list WHERE id &gt; ?```" in shown
    assert texts(payloads[1])[0].startswith("acknowledged by bob: ")
    assert "acknowledged by `bob`: on it" in texts(payloads[1])[1]
    assert texts(payloads[2])[0].startswith("resolved by bob: ")


def test_untrusted_text_cannot_ping_link_or_restyle() -> None:
    alert = make_alert(user=HOSTILE, application_name="<@U024BE7LH> <#C024BE7LR>", summary=HOSTILE)
    payload = sink("https://hooks.example/x").render(alert, make_step(), None)
    for text in texts(payload):
        # any "<" left would be Slack markup: a mention, a link, a channel
        assert re.search(r"<[!@#h]", text) is None, text
    shown = "\n".join(texts(payload))
    assert "&lt;!channel&gt;" in shown and "&lt;https://evil.example|click&gt;" in shown
    assert "`&lt;!channel&gt; *bold*" in shown  # a name sits in a code span: no *bold* applies
    assert "ˋ" in shown  # its backtick could have closed the span
    assert "\\x1b" in shown and "\\u202e" in shown  # controls shown, not sent raw
    assert "\udcff" not in shown and "\U0001f600" in shown  # valid Unicode only
    message = json.loads(payload or b"")
    assert all(block["text"]["verbatim"] is True for block in message["blocks"])


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [("a&b", 10, "a&amp;b"), ("aaaa&", 8, "aaaa…"), ("<<<", 9, "&lt;&lt;…")],
)
def test_escape_never_cuts_an_entity(text: str, limit: int, expected: str) -> None:
    assert escape(text, limit) == expected


async def test_huge_fields_stay_within_slacks_limits(slack: SlackReceiver) -> None:
    alert = make_alert(
        user="<" * 5000,
        application_name="&" * 5000,
        statement="SELECT '<>' " * 200_000,
        summary="s" * 9000,
    )
    target = sink(slack.webhook_url)
    payloads = [
        target.render(alert, make_step(a, "<!here>" * 100, "&" * 5000), None) for a in Action
    ]
    for payload in payloads:
        assert all(len(text) <= 3000 for text in texts(payload))
    verdicts = await deliver_all(target, payloads)
    assert [v.outcome for v in verdicts] == [Outcome.SENT] * 3
    assert slack.rejected == []


async def test_aggregate_counts_exactly_and_stays_small(slack: SlackReceiver) -> None:
    target = sink(slack.webhook_url)
    one = target.render(make_alert(summary="<b&d>"), make_step(), None)
    assert one is not None
    combined = target.aggregate([one] * 10_000)
    assert combined is not None and len(combined) < 40_000
    shown = texts(combined)
    assert "10000 alerts held back" in shown[0]
    assert shown[2].count("•") == 20 and "…and 9980 more" in shown[2]
    assert "&lt;b&amp;d&gt;" in shown[2]
    (verdict,) = await deliver_all(target, [combined])
    assert verdict.outcome is Outcome.SENT
    assert slack.rejected == []


def test_limit_is_one_per_second_in_one_bucket() -> None:
    target = sink("https://hooks.example/x")
    assert target.limit == RateLimit(1, 1.0) and target.bucket(b"{}") == ""


async def test_refusals_fail_and_never_show_the_url(slack: SlackReceiver) -> None:
    wrong = sink(slack.url + "/services/T0000/B0000/wrongtoken")
    (refused,) = await deliver_all(wrong, [b'{"text":"x"}'])
    assert refused.detail == "HTTP 404: no_service"
    target = sink(slack.webhook_url)
    token = slack.hook_path.rsplit("/", 1)[1]
    url = slack.webhook_url.encode()
    slack.fail(400, body=b"proxy says: " + url)
    # far enough in that the detail's cut (300 characters) falls inside the token: masking
    # after cutting would keep the token's first half
    pad = 299 - len("HTTP 400: ") - len(url) + len(token) // 2
    slack.fail(400, body=b"x" * pad + url)
    slack.fail(429, headers={"Retry-After": "7"})
    echoed, cut, throttled = await deliver_all(target, [b'{"text":"x"}'] * 3)
    assert (echoed.outcome, echoed.detail) == (Outcome.FAILED, "HTTP 400: proxy says: ***")
    assert cut.outcome is Outcome.FAILED
    assert token[:8] not in cut.detail and "/services/" not in cut.detail
    assert (throttled.outcome, throttled.retry_after) == (Outcome.RETRY, 7.0)


async def test_unreachable_is_a_retry_without_the_secret() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T0/B0/s3cr3tT0ken"  # nobody listens
    (verdict,) = await deliver_all(sink(url), [b'{"text":"x"}'])
    assert verdict.outcome is Outcome.RETRY and verdict.detail
    assert "s3cr3tT0ken" not in verdict.detail and url not in verdict.detail
