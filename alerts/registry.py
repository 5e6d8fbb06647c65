"""The configured sinks, built from `[alerts.*]`, refused at start when they cannot work.

A sink table present in the settings turns the sink on; one that lacks its key or names a URL
that is not http(s) stops tablewatch with one line (`SinkConfigError`) rather than failing every
page later. The line names the sink and the setting, never the value: these values are secrets
(a Slack webhook URL is one whole).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from alerts.alertmanager import Alertmanager
from alerts.base import reveal
from alerts.command import Command
from alerts.local import LocalSink
from alerts.opsgenie import Opsgenie
from alerts.pagerduty import PagerDuty
from alerts.slack import Slack
from alerts.webhook import Webhook
from core.settings import AlertsSettings
from core.sinks import AlertSink


class SinkConfigError(Exception):
    """A configured sink that cannot work; `str()` is one line without any secret."""


def build_sinks(settings: AlertsSettings, *, host: str, local: Path | None) -> list[AlertSink]:
    """Every configured sink, then the local one when `local` (its file) is given.

    Raises:
        SinkConfigError: a configured sink misses its key or has a URL that is not http(s).
    """
    sinks: list[AlertSink] = []
    if (pd := settings.pagerduty) is not None:
        _url("pagerduty", "url", pd.url)
        _present("pagerduty", "routing_key", reveal(pd.routing_key))
        sinks.append(PagerDuty(pd, host=host))
    if (am := settings.alertmanager) is not None:
        _url("alertmanager", "url", am.url)
        sinks.append(Alertmanager(am, host=host))
    if (og := settings.opsgenie) is not None:
        _url("opsgenie", "url", og.url)
        _present("opsgenie", "api_key", reveal(og.api_key))
        sinks.append(Opsgenie(og, host=host))
    if (slack := settings.slack) is not None:
        secret = reveal(slack.webhook_url)
        _present("slack", "webhook_url", secret)
        _url("slack", "webhook_url", secret)
        sinks.append(Slack(slack, host=host))
    if (hook := settings.webhook) is not None:
        _present("webhook", "url", hook.url)
        _url("webhook", "url", hook.url)
        sinks.append(Webhook(hook, host=host))
    if (command := settings.command) is not None:
        if not command.argv or not command.argv[0]:
            raise SinkConfigError('[alerts.command] argv: give the command to run, e.g. ["notify"]')
        sinks.append(Command(command, host=host))
    if local is not None:
        sinks.append(LocalSink(local))
    return sinks


def _present(sink: str, key: str, value: str) -> None:
    if not value:
        variable = f"TABLEWATCH_ALERTS__{sink.upper()}__{key.upper()}"
        raise SinkConfigError(f"[alerts.{sink}] {key}: required (set {variable})")


def _url(sink: str, key: str, url: str) -> None:
    # the URL itself is not quoted: it may hold a token (Slack's path, user:password@)
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise SinkConfigError(f"[alerts.{sink}] {key}: not a valid URL") from None
    if scheme not in ("http", "https") or not host:
        raise SinkConfigError(f"[alerts.{sink}] {key}: must be an http:// or https:// URL")
