"""The agent API (DESIGN.md): what a remote dashboard needs, as JSON over HTTP.

    GET  /api/v1/snapshot                 the latest snapshot (`tablewatch.wire.snapshot_json`)
    GET  /api/v1/stream[?interval=S]      a snapshot every S seconds (default 1) as server-sent
                                          events (`event: snapshot`, `data: <one JSON line>`)
    POST /api/v1/alerts                   page: {user, client_addr, application_name, table,
                                          severity, operator, note?, reasons?} -> 201, the alert
    POST /api/v1/alerts/{key}/ack         acknowledge: {operator, note?} -> the alert
    POST /api/v1/alerts/{key}/resolve     resolve: {operator, note?} -> the alert
    POST /api/v1/expected                 mark a reader expected: {principal..., operator, note?}
    POST /api/v1/snooze                   snooze a reader: {principal..., operator, seconds}
    POST /api/v1/backends/{pid}/cancel    cancel the query of one of the reader's backends:
    POST /api/v1/backends/{pid}/terminate {principal..., operator} -> {"done": "<one line>"}
                                          (terminate: end its session)

With a token configured, every request needs `Authorization: Bearer <token>` (the agent refuses
to listen off loopback without one). Every refusal is JSON `{"error": "<one line>"}` with a 4xx
status that says what kind: 400 malformed (the field named), 401 no or wrong token, 404 no such
endpoint or alert, 405 wrong method, 409 the action cannot be done now (the agent's reason), 413
body too large, 415 not JSON, 503 too many streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from core.findings import PrincipalKey
from core.safetext import safe
from core.snapshot import AlertView
from core.view import ActionRefused, EngineView, PageRequest
from tablewatch.web import is_loopback, refusal
from tablewatch.wire import (
    PID_MAX,
    Fields,
    WireError,
    alert_json,
    encode,
    read_principal,
    read_reason,
    snapshot_json,
)

PREFIX: Final = "/api/v1"
MAX_BODY: Final = 64 * 1024
"""Request bodies are small (a note is at most NOTE_CHARS): anything larger is refused (413)."""
NOTE_CHARS: Final = 4000
OPERATOR_CHARS: Final = 200
MAX_STREAMS: Final = 32
STREAM_INTERVAL: Final = (0.2, 1.0, 60.0)
"""Smallest, default and largest interval between two streamed snapshots, seconds."""
SNAPSHOT_REUSE_SECONDS: Final = 0.2
"""Clients asking within this long of each other share one encoded snapshot."""
SNOOZE_MAX_SECONDS: Final = 7 * 86_400

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (404, 405, 413) as JSON with a reason, like ours; a failure of
    ours as a 500 that says what broke (rather than a connection cut short)."""
    try:
        return await handler(request)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = {
            404: f"no such endpoint: {safe(request.path)} (see {PREFIX}/snapshot)",
            405: f"{safe(request.method, 20)} is not allowed on {safe(request.path)}",
            413: f"the body is larger than {MAX_BODY:,} bytes",
        }.get(exc.status, exc.reason)
        return refusal(exc.status, reason)
    except Exception as exc:
        return refusal(500, safe(f"internal error: {type(exc).__name__}: {exc}", 300))


def token_guard(token: str) -> Middleware:
    """Refuse (401) whoever does not send `Authorization: Bearer <token>`."""
    expected = token.encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        sent = given.strip().encode("utf-8", "surrogateescape")  # any bytes: never a 500
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent, expected):
            answer = refusal(401, "a valid token is required: Authorization: Bearer <token>")
            answer.headers["WWW-Authenticate"] = 'Bearer realm="tablewatch"'
            return answer
        return await handler(request)

    return guard


@web.middleware
async def loopback_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without a token the API listens on loopback only; refuse (403) a request whose Host names
    anything else, which is what a browser tricked by DNS rebinding would send."""
    host = request.url.host or ""
    if not is_loopback(host.strip("[]")):
        return refusal(403, "this agent's API answers requests for a loopback host only "
                            "(set a token to serve other names)")  # fmt: skip
    return await handler(request)


class AgentApi:
    """The API's handlers over an engine view (the agent's `LiveEngine`)."""

    def __init__(self, view: EngineView) -> None:
        self.view = view
        self.closing = asyncio.Event()
        self.streams = 0
        self._encoded: tuple[float, bytes] = (-1.0, b"")
        self._encoding: asyncio.Lock = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        """Every endpoint."""
        return [
            web.get(f"{PREFIX}/snapshot", self.snapshot),
            web.get(f"{PREFIX}/stream", self.stream),
            web.post(f"{PREFIX}/alerts", self.page),
            web.post(f"{PREFIX}/alerts/{{key}}/ack", self.acknowledge),
            web.post(f"{PREFIX}/alerts/{{key}}/resolve", self.resolve),
            web.post(f"{PREFIX}/expected", self.expected),
            web.post(f"{PREFIX}/snooze", self.snooze),
            web.post(f"{PREFIX}/backends/{{pid}}/cancel", self.cancel),
            web.post(f"{PREFIX}/backends/{{pid}}/terminate", self.terminate),
        ]

    def middlewares(self, token: str | None) -> list[Middleware]:
        """JSON refusals, and the token check when there is a token (without one, only requests
        naming a loopback host: a web page's DNS rebinding cannot reach the API)."""
        return [json_errors, token_guard(token) if token else loopback_guard]

    async def close(self, app: web.Application | None = None) -> None:
        """End the streams (the listener is stopping)."""
        self.closing.set()

    # reading ------------------------------------------------------------------------------------

    def _stale(self) -> None:
        """An action changed what the engine shows: the next reader gets a fresh snapshot."""
        self._encoded = (-1.0, b"")

    async def _snapshot_bytes(self) -> bytes:
        async with self._encoding:
            at, body = self._encoded
            now = time.monotonic()
            if now - at > SNAPSHOT_REUSE_SECONDS:
                snap = await self.view.snapshot()
                body = encode(snapshot_json(snap, self.view.name))
                self._encoded = (now, body)
            return body

    async def snapshot(self, request: web.Request) -> web.Response:
        """`GET /api/v1/snapshot`."""
        body = await self._snapshot_bytes()
        return web.Response(body=body, content_type="application/json")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """`GET /api/v1/stream`: snapshots as server-sent events until the client leaves."""
        low, default, high = STREAM_INTERVAL
        raw = request.query.get("interval", str(default))
        try:
            interval = float(raw)
        except ValueError:
            return refusal(400, f"interval: expected seconds, got {raw[:40]!r}")
        if not low <= interval <= high:
            return refusal(400, f"interval: expected {low} to {high:g} seconds")
        if self.streams >= MAX_STREAMS:
            return refusal(503, f"too many streams open ({MAX_STREAMS}); try again later")
        answer = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        self.streams += 1
        try:
            await answer.prepare(request)
            await answer.write(f"retry: {int(interval * 1000)}\n\n".encode())
            while not self.closing.is_set():
                try:
                    body = await self._snapshot_bytes()
                except Exception as exc:  # said to the client, which shows it and reconnects
                    why = safe(f"internal error: {type(exc).__name__}: {exc}", 300)
                    await answer.write(b"event: error\ndata: " + encode({"error": why}) + b"\n\n")
                    break
                await answer.write(b"event: snapshot\ndata: " + body + b"\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), interval)
        except ConnectionError:
            pass  # the client left
        finally:
            self.streams -= 1
        return answer

    # acting -------------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        """`POST /api/v1/alerts`: the operator's page."""

        async def act(f: Fields) -> web.Response:
            page = PageRequest(
                await self._principal(f),
                f.severity(allow_none=False),
                _note(f),
                _operator(f),
                reasons=tuple(f.items("reasons", read_reason))[:50],
            )
            return web.json_response(alert_json(await self.view.page(page)), status=201)

        return await self._carry_out(request, act)

    async def acknowledge(self, request: web.Request) -> web.Response:
        """`POST /api/v1/alerts/{key}/ack`."""
        return await self._on_alert(request, self.view.acknowledge)

    async def resolve(self, request: web.Request) -> web.Response:
        """`POST /api/v1/alerts/{key}/resolve`."""
        return await self._on_alert(request, self.view.resolve)

    async def _on_alert(
        self, request: web.Request, action: Callable[[str, str, str], Awaitable[AlertView]]
    ) -> web.Response:
        key = request.match_info["key"]

        async def act(f: Fields) -> web.Response:
            note, operator = _note(f), _operator(f)
            if key not in {a.key for a in (await self.view.snapshot()).alerts}:
                raise _Refused(404, f"no alert with key {key[:80]!r}")
            return web.json_response(alert_json(await action(key, note, operator)))

        return await self._carry_out(request, act)

    async def expected(self, request: web.Request) -> web.Response:
        """`POST /api/v1/expected`: the reader is known from now on."""

        async def act(f: Fields) -> web.Response:
            principal, note = await self._principal(f), _note(f)
            await self.view.mark_expected(principal, note, _operator(f))
            return web.json_response({"expected": principal.fields(), "note": note})

        return await self._carry_out(request, act)

    async def snooze(self, request: web.Request) -> web.Response:
        """`POST /api/v1/snooze`: the reader does not page for `seconds` (0 lifts it)."""

        async def act(f: Fields) -> web.Response:
            principal, seconds = await self._principal(f), f.integer("seconds")
            if seconds > SNOOZE_MAX_SECONDS:
                raise WireError(f"seconds: at most {SNOOZE_MAX_SECONDS:,} (a week)")
            await self.view.snooze(principal, seconds, _operator(f))
            return web.json_response({"snoozed": principal.fields(), "seconds": seconds})

        return await self._carry_out(request, act)

    async def cancel(self, request: web.Request) -> web.Response:
        """`POST /api/v1/backends/{pid}/cancel`: pg_cancel_backend on one of the reader's."""
        return await self._signal(request, terminate=False)

    async def terminate(self, request: web.Request) -> web.Response:
        """`POST /api/v1/backends/{pid}/terminate`: pg_terminate_backend on one of the reader's."""
        return await self._signal(request, terminate=True)

    async def _signal(self, request: web.Request, *, terminate: bool) -> web.Response:
        """The reader is named in the body as for the other actions: the engine signals only a
        backend it saw reading the table for that reader (409 with the reason otherwise)."""
        raw = request.match_info["pid"]

        async def act(f: Fields) -> web.Response:
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 10 and 0 < int(raw) <= PID_MAX):
                raise WireError(f"pid: expected a backend's process id, got {raw[:20]!r}")
            principal, operator = await self._principal(f), _operator(f)
            done = await self.view.signal_backend(principal, int(raw), terminate, operator)
            return web.json_response({"done": done})

        return await self._carry_out(request, act)

    async def _carry_out(
        self, request: web.Request, act: Callable[[Fields], Awaitable[web.Response]]
    ) -> web.Response:
        """`act` on the request's JSON body: malformed is a 400 (415: not JSON) naming the
        field, an action the engine refuses a 409 with its reason. Every field is read before
        the action starts, so a bad request changes nothing."""
        try:
            return await act(await _body(request))
        except _Refused as exc:
            return exc.answer()
        except WireError as exc:
            return refusal(400, str(exc))
        except ActionRefused as exc:
            return refusal(409, str(exc))
        finally:
            self._stale()

    async def _principal(self, f: Fields) -> PrincipalKey:
        """The request's reader, on one of the watched tables."""
        principal = read_principal(f)
        if principal.agent:
            raise WireError("agent: not accepted here (a fleet's dashboard strips it)")
        tables = {t.name for t in (await self.view.snapshot()).tables}
        if principal.table not in tables:
            watched = ", ".join(sorted(tables)) or "none"
            raise WireError(f"table: {principal.table[:80]!r} is not watched here ({watched})")
        return principal


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status

    def answer(self) -> web.Response:
        return refusal(self.status, str(self))


async def _body(request: web.Request) -> Fields:
    """The request's JSON object."""
    if request.content_type != "application/json":
        raise _Refused(415, "the body must be JSON (Content-Type: application/json)")
    raw = await request.read()  # aiohttp refuses past client_max_size: 413
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise _Refused(400, f"the body is not JSON: {exc}") from None
    except UnicodeDecodeError:  # a string holding bytes that are not UTF-8
        raise _Refused(400, "the body is not JSON: a string is not UTF-8") from None
    return Fields(value)


def _note(f: Fields) -> str:
    return f.text("note", "", limit=NOTE_CHARS)


def _operator(f: Fields) -> str:
    operator = f.text("operator", limit=OPERATOR_CHARS)
    if not operator.strip():
        raise WireError("operator: who is acting (a login name) is required")
    return operator
