"""Slack incoming webhook: one message per alert, a short line when it is acknowledged or resolved.

The message is `{"text": fallback, "blocks": [section...]}`, every text within Slack's 3000
characters. Names and statements come from whoever connects to the database, so in every text:
`&`, `<` and `>` are escaped as Slack documents (`<!channel>` or `<https://evil|click>` stay
text), names sit in code spans (no `*bold*` or `_italic_` from a user name; Slack cannot escape a
backtick, so one is shown as `ˋ`), and `verbatim` stops Slack from linking bare URLs and names.
Slack takes about one message per second per webhook: a burst is folded into one message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from alerts.base import reveal
from alerts.http import HttpSink
from alerts.render import encode, iso
from core.findings import Severity
from core.safetext import ELLIPSIS, safe
from core.settings import SlackSink
from core.sinks import Action, Alert, RateLimit, Step, Verdict

TEXT_CHARS = 3000
"""Slack's limit on a section's text; the fallback `text` is kept to it as well."""
LISTED = 20
"""Held-back alerts listed one by one in an aggregate message."""
_MARKS = {Severity.CRITICAL: ":rotating_light:", Severity.WARNING: ":warning:"}


def escape(text: str, limit: int = TEXT_CHARS) -> str:
    """`text` with Slack's control characters escaped, at most `limit` characters, never
    cut inside an entity.

    >>> escape("<!channel> & co")
    '&lt;!channel&gt; &amp; co'
    >>> escape("a<b", 4)
    'a…'
    """
    escaped = text[: limit + 1].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _cut(escaped, limit)


def code(text: str, limit: int = 200) -> str:
    """An untrusted one-line value as an inline code span (no formatting can apply inside)."""
    return "`" + escape(safe(text, limit).replace("`", "ˋ"), limit) + "`"


def section(text: str) -> dict[str, Any]:
    """A mrkdwn section block of escaped `text`; `verbatim`: no automatic links or mentions.
    The callers' bounds keep texts under the limit; the cut is only a guard."""
    shown = _cut(text, TEXT_CHARS)
    return {"type": "section", "text": {"type": "mrkdwn", "text": shown, "verbatim": True}}


class Slack(HttpSink[SlackSink]):
    """The Slack sink, built from `[alerts.slack]`; the webhook URL is the secret."""

    name = "slack"
    url_setting = "webhook_url"
    limit = RateLimit(1, 1.0)

    def __init__(self, config: SlackSink, *, host: str) -> None:
        self._url = reveal(config.webhook_url)
        super().__init__(config, host=host, secrets=[self._url])

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """The alert as a message, or a one-line follow-up for acknowledge and resolve."""
        if step.action is Action.TRIGGER:
            return encode(_trigger_message(alert))
        verb = "acknowledged" if step.action is Action.ACKNOWLEDGE else "resolved"
        summary = escape(safe(alert.summary, 500), 1500)
        line = f"{verb} by {code(step.actor, 100)}"
        if step.note:
            line += f": {escape(safe(step.note, 500), 1000)}"
        text = escape(f"{verb} by {safe(step.actor, 100)}: {safe(alert.summary, 500)}")
        return encode({"text": text, "blocks": [section(f"{line}\n> {summary}")]})

    def aggregate(self, payloads: Sequence[bytes]) -> bytes | None:
        """One message counting the held-back messages and listing the first `LISTED`
        (None for none)."""
        count = len(payloads)
        if not count:
            return None
        lines = []
        for payload in payloads[:LISTED]:
            try:
                text = str(json.loads(payload).get("text", ""))
            except (ValueError, AttributeError):
                text = "(unreadable)"
            # the texts are escaped already: only cut them, entity-safely
            lines.append("• " + _cut(text.replace("\n", " "), 140))
        if count > LISTED:
            lines.append(f"…and {count - LISTED} more")
        head = f"tablewatch: {count} alerts held back by Slack's rate limit"
        blocks = [section(f"*{head}*"), section("\n".join(lines))]
        return encode({"text": head, "blocks": blocks})

    async def deliver(self, payload: bytes) -> Verdict:
        """POST to the webhook; Slack answers 200 `ok`."""
        return await self.post(self._url, payload)


def _trigger_message(alert: Alert) -> dict[str, Any]:
    p = alert.principal
    summary = escape(safe(alert.summary, 500), 2500)
    mark = _MARKS.get(alert.severity, ":information_source:")
    blocks = [
        section(f"{mark} *{alert.severity.label.upper()}* {summary}"),
        section(
            f"*Reader:* {code(p.user)} from {code(p.client_addr, 100)}"
            f" via {code(p.application_name)} on {code(p.table)}"
        ),
    ]
    if alert.reasons:
        why = [f"• {code(r.code, 64)} {escape(safe(r.detail, 200), 1000)}" for r in alert.reasons]
        blocks.append(section("*Why:*\n" + "\n".join(why[:10])))
    if alert.statement is not None:
        shown = safe(alert.statement, 2000, keep_newlines=True).replace("`", "ˋ")
        blocks.append(section(f"*Statement (redacted):*\n```{escape(shown, 2900)}```"))
    facts = f"key {code(alert.key, 300)} · {alert.findings} finding(s)"
    if alert.suppressed:
        facts += f" · {alert.suppressed} suppressed"
    facts += f" · since {iso(alert.started_us)}"
    if alert.operator:
        facts += f" · paged by {code(alert.operator, 100)}"
    if alert.note:
        facts += f": {escape(safe(alert.note, 500), 1500)}"
    blocks.append(section(facts))
    text = escape(f"[{alert.severity.label}] {safe(alert.summary, 1000)}")
    return {"text": text, "blocks": blocks}


def _cut(escaped: str, limit: int) -> str:
    """Already escaped text cut to `limit` characters, not inside an entity."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&", max(len(cut) - 5, 0))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS
