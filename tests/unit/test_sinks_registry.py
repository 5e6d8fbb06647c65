"""Building the configured sinks, and refusing the ones that cannot work without showing secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alerts.local import LocalSink
from alerts.registry import SinkConfigError, build_sinks
from core.settings import AlertsSettings

SECRETS = (
    "R0UTINGKEY-s3cret",
    "genie-s3cret",
    "hooks.example/services/T0/B0/s3cret",
    "hmac-s3cret",
)


def settings(**sections: Any) -> AlertsSettings:
    return AlertsSettings.model_validate(sections)


async def test_every_configured_sink_is_built_in_order(tmp_path: Path) -> None:
    config = settings(
        pagerduty={"routing_key": SECRETS[0]},
        alertmanager={"url": "http://127.0.0.1:9093"},
        opsgenie={"api_key": SECRETS[1]},
        slack={"webhook_url": f"https://{SECRETS[2]}"},
        webhook={"url": "http://127.0.0.1:8080/hook", "secret": SECRETS[3]},
        command={"argv": ["notify-send", "tablewatch"]},
    )
    sinks = build_sinks(config, host="db1", local=tmp_path / "alerts.jsonl")
    assert [s.name for s in sinks] == [
        "pagerduty",
        "alertmanager",
        "opsgenie",
        "slack",
        "webhook",
        "command",
        "local",
    ]
    assert isinstance(sinks[-1], LocalSink) and sinks[-1].path == tmp_path / "alerts.jsonl"
    assert all(s.resend_seconds is None for s in sinks if s.name != "alertmanager")
    for sink in sinks:
        await sink.close()


def test_nothing_configured_builds_nothing() -> None:
    assert build_sinks(settings(), host="db1", local=None) == []


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"pagerduty": {}},
            "[alerts.pagerduty] routing_key: required"
            " (set TABLEWATCH_ALERTS__PAGERDUTY__ROUTING_KEY)",
        ),
        ({"pagerduty": {"routing_key": ""}}, "[alerts.pagerduty] routing_key: required"),
        (
            {"pagerduty": {"routing_key": SECRETS[0], "url": f"ftp://x/{SECRETS[0]}"}},
            "[alerts.pagerduty] url: must be an http:// or https:// URL",
        ),
        ({"alertmanager": {"url": "localhost:9093"}}, "[alerts.alertmanager] url: must be"),
        ({"opsgenie": {}}, "[alerts.opsgenie] api_key: required"),
        (
            {"opsgenie": {"api_key": SECRETS[1], "url": "api.opsgenie.com/v2/alerts"}},
            "[alerts.opsgenie] url: must be",
        ),
        ({"slack": {}}, "[alerts.slack] webhook_url: required"),
        (
            {"slack": {"webhook_url": f"javascript:{SECRETS[2]}"}},
            "[alerts.slack] webhook_url: must be",
        ),
        (
            {"slack": {"webhook_url": "https://hooks.example:99999/services/T0/B0/s3cret"}},
            "[alerts.slack] webhook_url: not a valid URL",
        ),
        ({"webhook": {"secret": SECRETS[3]}}, "[alerts.webhook] url: required"),
        ({"webhook": {"url": f"file:///etc/{SECRETS[3]}"}}, "[alerts.webhook] url: must be"),
        ({"webhook": {"url": "https://"}}, "[alerts.webhook] url: must be"),
        ({"command": {}}, "[alerts.command] argv: give the command to run"),
        ({"command": {"argv": [""]}}, "[alerts.command] argv: give the command to run"),
    ],
)
def test_a_sink_that_cannot_work_is_refused_in_one_line(
    sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(SinkConfigError) as raised:
        build_sinks(settings(**sections), host="db1", local=None)
    text = str(raised.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert not any(part in text for secret in SECRETS for part in (secret, "s3cret"))
