"""/metrics over HTTP as Prometheus scrapes it: the text format, basic auth against bcrypt
hashes (as the exporter-toolkit web config), TLS, and one-line refusals."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from core.engine import Engine, EngineConfig
from core.settings import MetricsSettings
from core.tables import TableName
from tablewatch.live import LiveEngine
from tablewatch.metrics import EngineCollector
from tablewatch.web import (
    MAX_LINE,
    Address,
    ListenError,
    WebServer,
    metrics_handler,
    tls_context,
)

PASSWORD = "correct horse battery staple"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def registry() -> CollectorRegistry:
    live = LiveEngine(Engine(EngineConfig(tables=(TableName.parse("crm.client_list", 10),))))
    reg = CollectorRegistry()
    reg.register(EngineCollector(live))
    return reg


@pytest.fixture
async def plain() -> AsyncIterator[WebServer]:
    server = WebServer(Address("127.0.0.1", 0), {"/metrics": metrics_handler(registry())})
    await server.start()
    yield server
    await server.stop()


async def test_metrics_are_served_in_the_text_format(plain: WebServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{plain.port}/metrics") as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"] == CONTENT_TYPE_LATEST  # text format
            text = await answer.text()
        async with http.get(f"http://127.0.0.1:{plain.port}/other") as answer:
            assert answer.status == 404
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"tablewatch_events", "tablewatch_reads", "tablewatch_outbox_depth"} <= names


async def test_basic_auth_lets_in_only_the_right_password() -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    server = WebServer(
        Address("127.0.0.1", 0), {"/metrics": metrics_handler(registry())}, users={"prom": hashed}
    )
    await server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            for auth in ({}, basic("prom", "wrong"), basic("eve", PASSWORD)):
                async with http.get(url, headers=auth) as answer:
                    assert answer.status == 401
                    assert answer.headers["WWW-Authenticate"].startswith('Basic realm="tablewatch"')
            async with http.get(url, headers={"Authorization": "Basic !!notbase64"}) as answer:
                assert answer.status == 401
            for _ in range(2):  # the second one from the cache of passed checks
                async with http.get(url, headers=basic("prom", PASSWORD)) as answer:
                    assert answer.status == 200
    finally:
        await server.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_serves_https_only(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = WebServer(
        Address("127.0.0.1", 0),
        {"/metrics": metrics_handler(registry())},
        tls=tls_context(str(cert), str(key)),
    )
    await server.start()
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{server.port}/metrics", ssl=trust) as answer:
                assert answer.status == 200
            too_long = f"https://127.0.0.1:{server.port}/metrics/{'x' * MAX_LINE}"
            async with http.get(too_long, ssl=trust) as answer:
                assert answer.status == 400
                assert await answer.json() == {
                    "error": f"a request line or header is longer than {MAX_LINE:,} bytes"
                }
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{server.port}/metrics") as answer:
                    await answer.read()
    finally:
        await server.stop()


async def test_refusals_are_one_line(tmp_path: Path, plain: WebServer) -> None:
    with pytest.raises(ListenError, match="cannot listen on 127.0.0.1:") as caught:
        await WebServer(Address("127.0.0.1", plain.port), {}).start()
    assert "\n" not in str(caught.value)
    with pytest.raises(ListenError, match="expected host:port"):
        Address.parse("9746")
    with pytest.raises(ListenError, match="TLS certificate"):
        tls_context(str(tmp_path / "missing.pem"), str(tmp_path / "missing.key"))


def test_settings_refuse_what_is_not_a_bcrypt_hash_or_half_a_tls_pair() -> None:
    with pytest.raises(ValueError, match="not a bcrypt hash"):
        MetricsSettings(basic_auth_users={"prom": "plaintext"})
    with pytest.raises(ValueError, match="both tls_cert_file and tls_key_file"):
        MetricsSettings(tls_cert_file="/etc/cert.pem")
    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)).decode()
    assert MetricsSettings(basic_auth_users={"prom": hashed}).basic_auth_users == {"prom": hashed}


MALFORMED = [
    # (what a client sent, the reason it is told); none of it echoes what was sent
    (
        b"GET /metrics" + b"/x" * MAX_LINE + b" HTTP/1.1\r\nHost: h\r\n\r\n",
        f"a request line or header is longer than {MAX_LINE:,} bytes",
    ),
    (
        b"GET /metrics HTTP/1.1\r\nHost: h\r\nCookie: " + b"c" * (MAX_LINE + 1) + b"\r\n\r\n",
        f"a request line or header is longer than {MAX_LINE:,} bytes",
    ),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "HTTPS sent to a plain HTTP listener"),
    (
        b"GET /\x1b[2J\x1b[31m HTTP/1.1\r\nHost: h\r\n\r\n",
        "malformed HTTP request: an invalid URL",
    ),
    (
        # the one refusal whose aiohttp message is the URL itself, markup and all
        b"GET http:///<script>alert(1)</script>\x1b[31m HTTP/1.1\r\nHost: h\r\n\r\n",
        "malformed HTTP request: an invalid URL",
    ),
    (b"GET /metrics HTTP/1.1\r\n\r\n", "malformed HTTP request: Missing 'Host' header in request."),
    (
        b"GET /metrics HTTP/1.1\r\nHost: h\r\nX: \x1b[31m\x00\r\n\r\n",
        "malformed HTTP request: Invalid header value char",
    ),
    (b"<b>\x1b[31m HTTP/1.1\r\n\r\n", "malformed HTTP request: an invalid method"),
    (
        b"POST /metrics HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "malformed HTTP request: Invalid character in chunk size",
    ),
]


async def exchange(port: int, sent: bytes) -> bytes:
    """What the listener answers `sent` with, until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return answer


def json_refusal(answer: bytes) -> str:
    """The reason of a 400 whose body is one JSON line `{"error": reason}`."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), head
    assert b"Content-Type: application/json" in head
    assert body.count(b"\n") == 0 and len(body) < 300, body
    refusal = json.loads(body)
    assert set(refusal) == {"error"}, refusal
    reason: str = refusal["error"]
    return reason


@pytest.mark.parametrize(("sent", "reason"), MALFORMED, ids=lambda v: repr(v)[:30])
async def test_what_is_not_http_is_refused_in_one_json_line_and_not_logged_as_an_error(
    plain: WebServer, sent: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A scanner, a TLS client on the plain port or an over-long line gets a 400 whose body is
    `{"error": ...}` on one line, never the request echoed back; the agent's stderr stays quiet."""
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    answer = await exchange(plain.port, sent)
    assert json_refusal(answer) == reason
    for echoed in (b"xxxx", b"cccc", b"\x1b", b"\\u001b", b"<script", b"<b>"):
        assert echoed not in answer, echoed
    assert not [r for r in caplog.records if r.levelno >= logging.INFO], caplog.text
    said = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert said == [f"refused a malformed request from 127.0.0.1: {reason}"], said


async def test_a_connection_serves_its_good_request_before_the_refusal(plain: WebServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", plain.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200 "), head
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(b"GET /\x1b[31m HTTP/1.1\r\nHost: h\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # then closed
    writer.close()
    await writer.wait_closed()
    assert json_refusal(answer) == "malformed HTTP request: an invalid URL"


async def test_a_failure_no_middleware_caught_is_a_json_500_and_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/metrics has no JSON middleware: a bug in a handler is still answered in one JSON line,
    and it is logged as the error it is, with its traceback."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("scrape failed")

    server = WebServer(Address("127.0.0.1", 0), {"/metrics": broken})
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as answer:
                assert answer.status == 500
                assert await answer.json() == {"error": "internal error"}
    finally:
        await server.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and errors[0].exc_info and "scrape failed" in caplog.text
