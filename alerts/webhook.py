"""Generic webhook: the alert as JSON to any URL, signed with HMAC-SHA256.

Body (at most 1 MB): `{"version": 1, "action", "key", "alert": {...details}, "step": {"action",
"time", "actor", "note"}}`. Headers: `X-Tablewatch-Event: <action>` and, when a secret is set,
`X-Tablewatch-Signature: sha256=<hex HMAC-SHA256(secret, body)>` over the exact bytes sent, so a
receiver can check who sent it; `step.time` lets it refuse replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from alerts.base import reveal
from alerts.http import HttpSink
from alerts.render import render_document
from core.settings import WebhookSink
from core.sinks import Action, Alert, Step, Verdict

SIGNATURE_HEADER = "X-Tablewatch-Signature"
EVENT_HEADER = "X-Tablewatch-Event"


def signature(secret: str, body: bytes) -> str:
    """The signature header's value.

    >>> signature("k", b"{}")
    'sha256=add853b103fbcc936a194f9eb15e29c4ff08af6e47d5d1bca4f20218e31e4fff'
    """
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Webhook(HttpSink[WebhookSink]):
    """The webhook sink, built from `[alerts.webhook]`."""

    name = "webhook"

    def __init__(self, config: WebhookSink, *, host: str) -> None:
        self._secret = reveal(config.secret)
        super().__init__(config, host=host, secrets=[self._secret])

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """The JSON document, within 1 MB."""
        return render_document(alert, step)

    async def deliver(self, payload: bytes) -> Verdict:
        """POST the document, signed; any 2xx is taken."""
        headers = {EVENT_HEADER: _action(payload)}
        if self._secret:
            # signed at delivery, not at render: the outbox never stores a value derived
            # from the secret, and a rotated secret applies to what is still queued
            headers[SIGNATURE_HEADER] = signature(self._secret, payload)
        return await self.post(self.config.url, payload, headers)


def _action(payload: bytes) -> str:
    try:
        action = json.loads(payload).get("action")
    except (ValueError, AttributeError):
        return "unknown"
    # only our own action names go into a header (a stray CR/LF must not forge headers)
    return str(action) if action in set(Action) else "unknown"
