"""Local HTTP servers standing in for PagerDuty, Opsgenie, Slack and a webhook receiver.

Each one listens on 127.0.0.1 at a free port (`async with PagerDutyReceiver() as pd:`), checks
every request against the service's public schema and limits, and keeps what it took
(`received`) apart from what it refused and why (`rejected`). It can be told to misbehave for
the next requests (`fail(500, times=3)`, `fail(429, headers={"Retry-After": "7"})`,
`stall(2.0)`): a valid request is then answered with the fault instead (and kept in `faulted`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Self
from urllib.parse import unquote

from aiohttp import web


class Invalid(Exception):
    """A request the real service would refuse: (status, reason)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Seen:
    """One request: where it went, its headers, its body and its JSON (None if unreadable)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    reason: str = ""
    """Why it was refused ("" when accepted)."""
    raw_path: str = ""
    """The path as sent, still percent-encoded."""


@dataclass
class Fault:
    status: int = 0
    """0: answer normally (after `delay`)."""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise Invalid(reason)


def _text(obj: dict[str, Any], key: str, limit: int, *, required: bool = False) -> None:
    value = obj.get(key)
    if value is None:
        _check(not required, f"{key} is required")
        return
    _check(isinstance(value, str), f"{key} must be a string")
    _check(not required or value != "", f"{key} must not be empty")
    _check(len(value) <= limit, f"{key} longer than {limit} characters ({len(value)})")


def _only(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(obj) - allowed
    _check(not unknown, f"{where}: unknown fields {sorted(unknown)}")


class Receiver:
    """The common server: routing, faults, records. Subclasses implement `check`."""

    max_body = 4 * 1024 * 1024

    def __init__(self) -> None:
        self.received: list[Seen] = []
        self.rejected: list[Seen] = []
        self.faulted: list[Seen] = []
        self._faults: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(
        self, status: int, times: int = 1, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `times` valid requests with `status` (and `body`, `headers`)."""
        for _ in range(times):
            self._faults.append(Fault(status, body, dict(headers or {})))

    def stall(self, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before answering the next `times` requests."""
        for _ in range(times):
            self._faults.append(Fault(delay=seconds))

    def check(self, request: web.Request, body: bytes, data: Any) -> web.Response:
        """Validate a parsed request (raise Invalid) and return the service's success answer."""
        raise NotImplementedError

    def parse(self, request: web.Request, body: bytes) -> Any:
        """The JSON body, strictly: UTF-8, an object."""
        _check(request.content_type == "application/json", "Content-Type is not application/json")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Invalid(f"not JSON: {exc}") from None
        _check(isinstance(data, dict), "body is not a JSON object")
        return data

    def refuse(self, problem: Invalid) -> web.Response:
        return web.json_response({"errors": [problem.reason]}, status=problem.status)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.path, dict(request.query), dict(request.headers), body, None)
        seen = replace(seen, raw_path=request.raw_path.partition("?")[0])
        try:
            _check(request.method == "POST", f"method {request.method}")
            seen = replace(seen, json=self.parse(request, body))
            answer = self.check(request, body, seen.json)
        except Invalid as problem:
            self.rejected.append(replace(seen, reason=problem.reason))
            return self.refuse(problem)
        fault = self._faults.popleft() if self._faults else Fault()
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status:
            self.faulted.append(seen)
            return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
        self.received.append(seen)
        return answer


class PagerDutyReceiver(Receiver):
    """Events API v2 at `/v2/enqueue`."""

    ACTIONS = {"trigger", "acknowledge", "resolve"}
    SEVERITIES = {"critical", "error", "warning", "info"}

    def refuse(self, problem: Invalid) -> web.Response:
        return web.json_response(
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": [problem.reason],
            },
            status=problem.status,
        )

    def check(self, request: web.Request, body: bytes, data: Any) -> web.Response:
        _check(request.path == "/v2/enqueue", f"no such path {request.path}")
        _check(len(body) <= 512 * 1024, "event larger than 512 KB")
        _only(
            data,
            {
                "routing_key",
                "event_action",
                "dedup_key",
                "payload",
                "client",
                "client_url",
                "images",
                "links",
            },
            "event",
        )
        _text(data, "routing_key", 10_000, required=True)
        _check(
            data.get("event_action") in self.ACTIONS,
            "event_action is not trigger|acknowledge|resolve",
        )
        trigger = data["event_action"] == "trigger"
        _text(data, "dedup_key", 255, required=not trigger)
        if trigger:
            payload = data.get("payload")
            _check(isinstance(payload, dict), "payload is required")
            _only(
                payload,
                {
                    "summary",
                    "source",
                    "severity",
                    "timestamp",
                    "component",
                    "group",
                    "class",
                    "custom_details",
                },
                "payload",
            )
            _text(payload, "summary", 1024, required=True)
            _text(payload, "source", 255, required=True)
            _check(payload.get("severity") in self.SEVERITIES, "payload.severity is invalid")
            for key in ("component", "group", "class"):
                _text(payload, key, 255)
            if "timestamp" in payload:
                try:
                    datetime.fromisoformat(payload["timestamp"])
                except (TypeError, ValueError):
                    raise Invalid("payload.timestamp is not ISO 8601") from None
        key = data.get("dedup_key") or uuid.uuid4().hex
        answer = {"status": "success", "message": "Event processed", "dedup_key": key}
        return web.json_response(answer, status=202)


class OpsgenieReceiver(Receiver):
    """Alert API at `/v2/alerts` (create) and `/v2/alerts/<id>/acknowledge|close`."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key

    def refuse(self, problem: Invalid) -> web.Response:
        body = {"message": problem.reason, "took": 0.001, "requestId": str(uuid.uuid4())}
        return web.json_response(body, status=problem.status)

    def check(self, request: web.Request, body: bytes, data: Any) -> web.Response:
        if request.headers.get("Authorization") != f"GenieKey {self.api_key}":
            raise Invalid("Could not authenticate", 401)
        # split before decoding: an alias may hold a "/" (sent as %2F)
        parts = [unquote(p) for p in request.raw_path.partition("?")[0].split("/")]
        if request.path == "/v2/alerts":
            self._create(data)
        else:
            _check(
                len(parts) == 5 and parts[:3] == ["", "v2", "alerts"],
                f"no such path {request.path}",
            )
            _check(parts[4] in ("acknowledge", "close"), f"no such action {parts[4]}")
            _check(request.query.get("identifierType") in ("id", "alias", "tiny"), "identifierType")
            _check(0 < len(parts[3]) <= 512, "identifier longer than 512 characters")
            _only(data, {"user", "source", "note"}, "request")
            _text(data, "user", 100)
            _text(data, "source", 100)
            _text(data, "note", 25_000)
        answer = {
            "result": "Request will be processed",
            "took": 0.002,
            "requestId": str(uuid.uuid4()),
        }
        return web.json_response(answer, status=202)

    def _create(self, data: dict[str, Any]) -> None:
        allowed = {
            "message",
            "alias",
            "description",
            "responders",
            "visibleTo",
            "actions",
            "tags",
            "details",
            "entity",
            "source",
            "priority",
            "user",
            "note",
        }
        _only(data, allowed, "alert")
        _text(data, "message", 130, required=True)
        _text(data, "alias", 512)
        _text(data, "description", 15_000)
        _text(data, "entity", 512)
        _text(data, "source", 100)
        _text(data, "user", 100)
        _text(data, "note", 25_000)
        _check(data.get("priority", "P3") in {"P1", "P2", "P3", "P4", "P5"}, "priority not P1-P5")
        tags = data.get("tags", [])
        _check(isinstance(tags, list) and len(tags) <= 20, "tags: at most 20")
        _check(all(isinstance(t, str) and len(t) <= 50 for t in tags), "tag longer than 50")
        details = data.get("details", {})
        _check(isinstance(details, dict), "details must be a map")
        _check(
            all(isinstance(k, str) and isinstance(v, str) for k, v in details.items()),
            "details: strings only",
        )
        _check(
            sum(len(k) + len(v) for k, v in details.items()) <= 8000, "details over 8000 characters"
        )


class SlackReceiver(Receiver):
    """An incoming webhook at `/services/T0/B0/<token>`; `url` includes that secret path."""

    def __init__(self, token: str = "xoxsecretTOKENvalue1234567890") -> None:
        super().__init__()
        self.hook_path = f"/services/T0000/B0000/{token}"

    @property
    def webhook_url(self) -> str:
        return self.url + self.hook_path

    def refuse(self, problem: Invalid) -> web.Response:
        return web.Response(status=problem.status, text=problem.reason)

    def check(self, request: web.Request, body: bytes, data: Any) -> web.Response:
        if request.path != self.hook_path:
            raise Invalid("no_service", 404)
        try:
            _text(data, "text", 40_000)
            blocks = data.get("blocks")
            _check("text" in data or blocks, "no_text")
            if blocks is not None:
                _check(isinstance(blocks, list) and 0 < len(blocks) <= 50, "blocks: 1 to 50")
                for block in blocks:
                    self._section(block)
        except Invalid as problem:
            raise Invalid(f"invalid_payload: {problem.reason}") from None
        return web.Response(status=200, text="ok")

    def _section(self, block: Any) -> None:
        _check(isinstance(block, dict) and block.get("type") == "section", "not a section")
        _only(block, {"type", "text", "fields", "block_id"}, "section")
        text = block.get("text")
        _check(isinstance(text, dict) and text.get("type") in ("mrkdwn", "plain_text"), "text type")
        _only(text, {"type", "text", "verbatim", "emoji"}, "text object")
        _text(text, "text", 3000, required=True)


class WebhookReceiver(Receiver):
    """Our generic webhook: checks `X-Tablewatch-Signature` with the shared secret."""

    max_body = 2 * 1024 * 1024

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def check(self, request: web.Request, body: bytes, data: Any) -> web.Response:
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        given = request.headers.get("X-Tablewatch-Signature", "")
        if not hmac.compare_digest(given, expected):
            raise Invalid("bad signature", 401)
        _check(len(body) <= 1024 * 1024, "body larger than 1 MB")
        _check(data.get("version") == 1, "version is not 1")
        _check(data.get("action") in ("trigger", "acknowledge", "resolve"), "action")
        _check(request.headers.get("X-Tablewatch-Event") == data["action"], "event header")
        _text(data, "key", 1024, required=True)
        _check(isinstance(data.get("alert"), dict), "alert is not an object")
        step = data.get("step")
        _check(isinstance(step, dict) and set(step) == {"action", "time", "actor", "note"}, "step")
        return web.json_response({"ok": True})
