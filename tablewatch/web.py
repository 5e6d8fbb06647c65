"""The agent's HTTP listeners: Prometheus `/metrics` with the exporter-toolkit's protections
(optional TLS and HTTP basic auth against bcrypt hashes), and the agent API (`tablewatch.api`).

prometheus-client's own server has TLS but no basic auth, so /metrics is served from aiohttp. A
bcrypt check costs tens of milliseconds by design: it runs in a thread, and a password that
passed is remembered (as its SHA-256, never in clear) for CACHE_SECONDS so a scrape every few
seconds does not pay it each time. A failed or missing authentication is a 401 with the
`WWW-Authenticate` challenge, the same answer whatever was wrong.

What aiohttp's HTTP parser refuses before any route sees it (a request line or header over
MAX_LINE bytes, a TLS client on the plain port, a scanner's garbage) is answered like the API's own
refusals: a 400 whose body is one JSON line, `{"error": reason}`, and logged at debug level in one
line (the `aiohttp.server` logger), not as an error with a traceback on the agent's stderr for
whoever can open a connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import bcrypt
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from core.safetext import safe

CACHE_SECONDS: Final = 60.0
REALM: Final = 'Basic realm="tablewatch", charset="UTF-8"'
SHUTDOWN_SECONDS: Final = 3.0
"""Requests still running when the listener stops get this long to finish."""
MAX_LINE: Final = 8190
"""The longest request line or header aiohttp's parser reads (its default, named here)."""
REASON_CHARS: Final = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ListenError(Exception):
    """The listener cannot start (bad address, port taken, bad certificate); one line."""


@dataclass(frozen=True, slots=True)
class Address:
    """Where to listen."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """`host:port` or `[v6]:port`.

        >>> Address.parse("127.0.0.1:9746"), Address.parse("[::1]:80")
        (Address(host='127.0.0.1', port=9746), Address(host='::1', port=80))
        """
        host, sep, port = text.rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5 or not host:
            raise ListenError(f"listen address {text!r}: expected host:port")
        if not 0 <= int(port) <= 65535:
            raise ListenError(f"listen address {text!r}: expected host:port")
        return cls(host.removeprefix("[").removesuffix("]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context (TLS 1.2 and up) from PEM files; ListenError in one line otherwise."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ListenError(f"TLS certificate {cert_file} / key {key_file}: {exc}") from None
    return context


class BasicAuth:
    """HTTP basic auth against bcrypt hashes (`user -> $2b$...`)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = {user: hashed.encode() for user, hashed in users.items()}
        self._passed: dict[tuple[str, bytes], float] = {}

    async def allows(self, header: str | None) -> bool:
        """Whether the Authorization header names a user with the right password."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, sep, password = (
                base64.b64decode(header[6:], validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return False
        token = (user, hashlib.sha256(password.encode() + hashed).digest())
        now = time.monotonic()
        if self._passed.get(token, 0.0) > now:
            return True
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        if ok:
            if len(self._passed) > 1000:
                self._passed.clear()
            self._passed[token] = now + CACHE_SECONDS
        return ok

    def middleware(self) -> Middleware:
        """An aiohttp middleware refusing whoever does not authenticate."""

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not await self.allows(request.headers.get("Authorization")):
                return web.Response(
                    status=401,
                    text="authentication required\n",
                    headers={"WWW-Authenticate": REALM},
                )
            return await handler(request)

        return guard


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """`GET /metrics`: the registry in the Prometheus text format, built now."""

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host`.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(status: int, reason: str) -> web.Response:
    """A JSON refusal: `{"error": reason}`."""
    return web.json_response({"error": reason}, status=status)


class _Connection(RequestHandler):
    """aiohttp's handler of one connection, whose own refusals are one JSON line."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            # A failure no middleware caught (a bug: aiohttp logs it with its traceback), or a
            # response already under way (aiohttp raises: the connection is cut).
            super().handle_error(request, status, exc, message)
            reason = "internal error" if status == 500 else "the request timed out"
        else:
            reason = refused_because(exc, message)
            self.logger.debug("refused a malformed request from %s: %s", request.remote, reason)
        answer = refusal(status, reason)
        answer.force_close()
        return answer


HTTPS_ON_PLAIN: Final = "Received HTTPS traffic on an HTTP port"
"""aiohttp's own words when a TLS handshake reaches a plain listener (worth saying as such)."""
REFUSED: Final[tuple[tuple[type[BaseException], str], ...]] = (
    # most specific first: BadHttpMethod is a BadStatusLine, all are BadHttpMessage
    (LineTooLong, f"a request line or header is longer than {MAX_LINE:,} bytes"),
    (InvalidHeader, "malformed HTTP request: an invalid header"),
    (InvalidURLError, "malformed HTTP request: an invalid URL"),
    (BadHttpMethod, "malformed HTTP request: an invalid method"),
    (BadStatusLine, "malformed HTTP request: an invalid request line"),
    (PayloadEncodingError, "malformed HTTP request: an invalid body (its length or chunking)"),
)
"""What is said of the parser's refusals whose message carries the request's own bytes."""


def refused_because(exc: BaseException | None, message: str | None) -> str:
    """Why aiohttp's parser refused a request, in one bounded line that does not echo it.

    Where aiohttp's message carries what was sent (a URL, a header, a request line), a phrase by
    the kind of refusal; otherwise its message's first line, fixed text of aiohttp's or llhttp's
    (`Missing 'Host' header in request.`, `Invalid header value char`).

    >>> refused_because(LineTooLong("/x" * 5000, "8190"), None)
    'a request line or header is longer than 8,190 bytes'
    >>> refused_because(InvalidURLError("http:///<script>"), "http:///<script>")
    'malformed HTTP request: an invalid URL'
    >>> refused_because(BadHttpMethod(error=HTTPS_ON_PLAIN), HTTPS_ON_PLAIN)
    'HTTPS sent to a plain HTTP listener'
    >>> refused_because(None, "Invalid header value char:\\n\\n  b'\\x1b'")
    'malformed HTTP request: Invalid header value char'
    """
    if isinstance(exc, BadHttpMethod) and message == HTTPS_ON_PLAIN:
        return "HTTPS sent to a plain HTTP listener"
    said = next((reason for kind, reason in REFUSED if isinstance(exc, kind)), None)
    if said is not None:
        return said
    first = (message or "").strip().split("\n", 1)[0].rstrip(": ")
    return safe(
        f"malformed HTTP request: {first}" if first else "malformed HTTP request", REASON_CHARS
    )


class _Server(web.Server):
    __slots__ = ()  # so the __class__ swap below holds should aiohttp give Server slots

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        made.__class__ = _Server  # the same server, handing connections to _Connection
        return made


class WebServer:
    """One listener serving the given routes (`path -> GET handler`, or aiohttp route defs)."""

    def __init__(
        self,
        address: Address,
        routes: Mapping[str, Handler] | Sequence[web.RouteDef],
        *,
        tls: ssl.SSLContext | None = None,
        users: Mapping[str, str] | None = None,
        middlewares: Sequence[Middleware] = (),
        max_body: int = 1024**2,
    ) -> None:
        self.address = address
        self.tls = tls
        guards = [BasicAuth(users).middleware()] if users else []
        self.app = web.Application(middlewares=[*guards, *middlewares], client_max_size=max_body)
        if isinstance(routes, Mapping):
            for path, handler in routes.items():
                self.app.router.add_get(path, handler)
        else:
            self.app.add_routes(routes)
        self._runner: web.AppRunner | None = None
        self.port = address.port
        """The port listened on (the one chosen when `address.port` is 0)."""

    async def start(self) -> None:
        """Listen; ListenError in one line when the address cannot be had."""
        runner = _Runner(
            self.app,
            access_log=None,
            shutdown_timeout=SHUTDOWN_SECONDS,
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.address.host, self.address.port, ssl_context=self.tls)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ListenError(f"cannot listen on {self.address}: {exc.strerror or exc}") from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
