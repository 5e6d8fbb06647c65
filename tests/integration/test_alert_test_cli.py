"""`tablewatch alert test`: a marked test alert through each configured sink, reported per sink,
exit 1 when one failed, secrets never printed."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.receivers import PagerDutyReceiver, SlackReceiver, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
ROUTING_KEY = "routingKEY0123456789abcdef012345"
HOOK_SECRET = "hook-secret-value-42"


async def alert_test(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    config = tmp_path / "settings.toml"
    if not config.exists():
        config.write_text('[[tables]]\nname = "crm.client_list"\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TABLEWATCH_")}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tablewatch.cli",
        "--config",
        str(config),
        "alert",
        "test",
        *args,
        cwd=ROOT,
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


@dataclass(frozen=True)
class Services:
    """Local PagerDuty, Slack and webhook receivers; `settings()` points the sinks at them."""

    pd: PagerDutyReceiver
    slack: SlackReceiver
    hook: WebhookReceiver

    def settings(self) -> dict[str, str]:
        return {
            "TABLEWATCH_ALERTS__PAGERDUTY__URL": f"{self.pd.url}/v2/enqueue",
            "TABLEWATCH_ALERTS__PAGERDUTY__ROUTING_KEY": ROUTING_KEY,
            "TABLEWATCH_ALERTS__SLACK__WEBHOOK_URL": self.slack.webhook_url,
            "TABLEWATCH_ALERTS__WEBHOOK__URL": f"{self.hook.url}/hook",
            "TABLEWATCH_ALERTS__WEBHOOK__SECRET": HOOK_SECRET,
        }

    def assert_no_secret_in(self, text: str) -> None:
        url = self.slack.webhook_url
        for secret in (ROUTING_KEY, HOOK_SECRET, url, url.split("/")[-1]):
            assert secret not in text


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    async with (
        PagerDutyReceiver() as pd,
        SlackReceiver() as slack,
        WebhookReceiver(HOOK_SECRET) as hook,
    ):
        yield Services(pd, slack, hook)


async def test_every_sink_gets_a_marked_test_alert_then_its_resolve(
    tmp_path: Path, services: Services
) -> None:
    pd, slack, hook = services.pd, services.slack, services.hook
    code, out, err = await alert_test(tmp_path, services.settings(), "--wait", "20")
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith("tablewatch alert test: sending a test alert to pagerduty")
    for name in ("pagerduty", "slack", "webhook"):
        (line,) = [x for x in lines if x.startswith(f"{name}: ")]
        assert line.startswith(f"{name}: ok: ") and "(then resolved)" in line
    assert [s.json["event_action"] for s in pd.received] == ["trigger", "resolve"]
    trigger = pd.received[0].json["payload"]
    assert trigger["severity"] == "info" and "test alert" in str(trigger["custom_details"])
    assert "TEST" in slack.received[0].json["text"] or "test" in slack.received[0].json["text"]
    assert [s.json["action"] for s in hook.received] == ["trigger", "resolve"]
    assert pd.rejected == slack.rejected == hook.rejected == []
    services.assert_no_secret_in(out + err)


async def test_one_sink_only_and_a_refusal_exits_1_with_the_reason(
    tmp_path: Path, services: Services
) -> None:
    services.slack.fail(404, body=b"no_service")
    code, out, err = await alert_test(
        tmp_path, services.settings(), "--sink", "slack", "--wait", "20"
    )
    assert code == 1
    assert "slack: FAILED: HTTP 404: no_service" in out
    assert "pagerduty" not in out.splitlines()[-1]
    assert services.pd.received == services.hook.received == []
    services.assert_no_secret_in(out + err)


async def test_a_sink_down_for_a_moment_is_retried_within_the_wait(
    tmp_path: Path, services: Services
) -> None:
    hook = services.hook
    hook.fail(503, times=2)
    code, out, _ = await alert_test(
        tmp_path, services.settings(), "--sink", "webhook", "--wait", "20"
    )
    assert code == 0, out
    assert len(hook.faulted) == 2
    assert [s.json["action"] for s in hook.received] == ["trigger", "resolve"]


async def test_a_sink_still_down_after_the_wait_is_reported_failed(
    tmp_path: Path, services: Services
) -> None:
    services.hook.fail(503, times=1000, body=b"maintenance")
    code, out, _ = await alert_test(
        tmp_path, services.settings(), "--sink", "webhook", "--wait", "2"
    )
    assert code == 1
    assert "webhook: FAILED: no answer within 2 s: retry in" in out and "maintenance" in out


async def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    code, out, err = await alert_test(tmp_path, {})
    assert code == 2 and "no alert sink is configured" in err and len(err.splitlines()) == 1
    env = {"TABLEWATCH_ALERTS__WEBHOOK__URL": "http://127.0.0.1:9/hook"}
    code, out, err = await alert_test(tmp_path, env, "--sink", "pagerduty")
    assert code == 2 and "no sink named 'pagerduty' is configured (configured: webhook)" in err
    env = {"TABLEWATCH_ALERTS__PAGERDUTY__URL": "https://events.pagerduty.com/v2/enqueue"}
    code, out, err = await alert_test(tmp_path, env)
    assert code == 2 and "[alerts.pagerduty] routing_key: required" in err
    code, out, err = await alert_test(tmp_path, env, "--wait", "soon")
    assert code == 2 and "expected seconds" in err


async def test_a_sink_down_for_the_whole_wait_does_not_hold_the_others_resolves_back(
    tmp_path: Path, services: Services
) -> None:
    services.hook.fail(503, times=1000, body=b"maintenance")
    started = time.monotonic()
    code, out, _ = await alert_test(tmp_path, services.settings(), "--wait", "3")
    took = time.monotonic() - started
    assert code == 1
    assert took < 3 + 6, f"took {took:.1f} s"
    assert "webhook: FAILED: no answer within 3 s" in out
    for name in ("pagerduty", "slack"):  # the sinks that took the trigger got their resolve
        (line,) = [x for x in out.splitlines() if x.startswith(f"{name}: ")]
        assert line.startswith(f"{name}: ok: ") and "(then resolved)" in line
    assert [s.json["event_action"] for s in services.pd.received] == ["trigger", "resolve"]
    assert services.hook.received == []


async def test_credentials_in_sink_urls_are_masked_even_when_an_answer_quotes_them(
    tmp_path: Path, services: Services
) -> None:
    token, password = "tok-SECRET-0042", "pw-SECRET-0043"
    basic = base64.b64encode(f"hookuser:{password}".encode()).decode()
    host = services.hook.url.removeprefix("http://")
    env = {
        **services.settings(),
        "TABLEWATCH_ALERTS__WEBHOOK__URL": f"http://hookuser:{password}@{host}/hook?token={token}",
    }
    # a receiver that quotes the request back: its line, its Authorization header
    services.hook.fail(
        400, body=f"bad: POST /hook?token={token} Authorization: Basic {basic}".encode()
    )
    services.slack.fail(404, body=f"no_service: POST {services.slack.hook_path}".encode())
    code, out, err = await alert_test(tmp_path, env, "--wait", "10")
    assert code == 1
    assert "webhook: FAILED: HTTP 400: bad: POST /hook?***" in out, out
    assert "slack: FAILED: HTTP 404: no_service: POST ***" in out, out
    seen = services.hook.faulted[0]
    assert seen.query == {"token": token} and seen.headers["Authorization"] == f"Basic {basic}"
    for secret in (token, password, basic, "SECRET"):
        assert secret not in out + err
    services.assert_no_secret_in(out + err)
