"""Fuzz targets: every parser of untrusted input, each as `check(data: bytes) -> None`.

A target returns quietly for any input, good or bad. An exception other than AssertionError is a
crash (a bug); an AssertionError is a broken promise. What each target promises:

- `csvlog`, `jsonlog`, `stderr` (the server log, written by PostgreSQL but holding whatever a
  client sent: statements, names, application_name; and damaged by crashes, copies, disks):
  `split` consumes everything at the end; the log cut into pieces anywhere (as the tail reads it)
  gives the very events of the whole; for csvlog, the whole-file fast path (`parse_text`, used by
  replay) gives the careful path's events or declines; `sniff` answers; every event is well typed.
- `pgaudit` (the nested CSV inside an `AUDIT: ` message): `parse_audit_message` returns typed
  fields or raises `MalformedRecord` with a short one-line reason; the batched splitter and the
  event builder agree with it, and a message it refuses is counted as malformed, never dropped
  silently.
- `statement` (the text of a statement, the input a reader controls most): its shape, redaction,
  the tamper recogniser, the relations it names and an engine's processing of it never raise.
- `settings` (settings.toml): `load_settings` returns settings or raises `SettingsError`: one line,
  bounded, never echoing the value of a secret key.
- `api` (request bodies and path parameters of the agent's POST endpoints, sent over loopback to a
  real aiohttp server in front of a real `LiveEngine`): every answer is one of the documented
  statuses (never a 500), a refusal is a JSON `{"error": ...}` of one bounded line, and the server
  answers the next request.

Used by tests/unit/test_fuzz.py (hypothesis, a short run in the suite) and bench/fuzz_bench.py
(atheris, coverage-guided, at least 30 CPU-minutes per target). `seeds(target)` gives inputs to
start from: real-shaped records built from the shared pgaudit corpus, settings files, bodies.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import tempfile
import tomllib
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from collectors.events import EventBuilder, ParseStats
from collectors.logformats import CsvLog, LogFormat, make_format, sniff
from collectors.pgaudit import (
    AuditFields,
    MalformedRecord,
    parse_audit_message,
    split_csv,
    split_csv_many,
)
from core.events import AccessEvent, EventKind
from core.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
STDERR_PREFIX = "%m [%p] %q%u@%d %r %a "
REASON_CHARS = 600
"""The longest one-line reason a target accepts (plus the settings file's path)."""

Check = Callable[[bytes], None]


# ----------------------------------------------------------------------------------- server logs


def _parser(fmt: str) -> LogFormat:
    # control on: the tamper records (ROLE, DDL, MISC) are parsed too; no tables: every relation
    return make_format(fmt, EventBuilder(None, ParseStats(), control=True), STDERR_PREFIX)


def _sound(event: AccessEvent) -> None:
    """An event's fields have the types the engine relies on."""
    assert isinstance(event.time_us, int)
    assert isinstance(event.kind, EventKind)
    for text in (
        event.user,
        event.database,
        event.client_addr,
        event.application_name,
        event.session_id,
        event.class_,
        event.command,
        event.object_type,
        event.object_name,
    ):
        assert isinstance(text, str)
    assert event.statement is None or isinstance(event.statement, str)
    assert event.parameters is None or all(isinstance(p, str) for p in event.parameters)
    for number in (event.statement_id, event.substatement_id, event.rows):
        assert number is None or (isinstance(number, int) and number >= 0)
    assert isinstance(event.pid, int)


def _cuts(data: bytes) -> list[bytes]:
    """`data` in pieces cut where a seeded generator says (the same cuts for the same data)."""
    rng = random.Random(zlib.crc32(data))
    n = len(data)
    cuts = sorted({rng.randrange(n + 1) for _ in range(rng.randrange(1, 8))}) if n else []
    bounds = [0, *cuts, n]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def check_log(fmt: str, data: bytes) -> None:
    """One server log in `fmt`, whole and in pieces."""
    sniff(data[:65_536], STDERR_PREFIX)
    whole = _parser(fmt)
    records, consumed = whole.split(data, final=True)
    assert consumed == len(data), f"final split left {len(data) - consumed} bytes"
    events = whole.parse(records)
    for event in events:
        _sound(event)

    pieces = _parser(fmt)
    fed: list[AccessEvent] = []
    pending = b""
    for piece in [*_cuts(data), b""]:
        final = not piece
        buf = pending + piece
        records, consumed = pieces.split(buf, final=final)
        assert 0 <= consumed <= len(buf)
        fed += pieces.parse(records)
        pending = buf[consumed:]
    assert pending == b"", "bytes left over after the final split"
    assert fed == events, "the log in pieces gave other events than the whole log"

    if isinstance(whole, CsvLog):
        fast = _parser("csvlog")
        assert isinstance(fast, CsvLog)
        quick = fast.parse_text(data.decode("utf-8", "replace"))
        if quick is not None:
            assert quick == events, "replay's fast path gave other events than the tail's"


def check_csvlog(data: bytes) -> None:
    check_log("csvlog", data)


def check_jsonlog(data: bytes) -> None:
    check_log("jsonlog", data)


def check_stderr(data: bytes) -> None:
    check_log("stderr", data)


# ------------------------------------------------------------------------------ nested pgaudit


def _one_line(reason: str) -> None:
    """A reason fit for a terminal or a log: one bounded line, no control characters."""
    assert "\n" not in reason and "\r" not in reason, f"reason on several lines: {reason[:200]!r}"
    assert len(reason) <= REASON_CHARS, f"reason of {len(reason):,} characters"
    assert not _CONTROL.search(reason), f"control characters in {reason[:200]!r}"


def check_pgaudit(data: bytes) -> None:
    """An `AUDIT: ` message (the bytes after the prefix), alone and in a batch of itself."""
    message = "AUDIT: " + data.decode("utf-8", "replace")
    try:
        fields: AuditFields | None = parse_audit_message(message)
    except MalformedRecord as exc:
        _one_line(str(exc))
        fields = None
    if fields is not None:
        assert fields.audit_type in ("OBJECT", "SESSION")
        assert fields.statement_id >= 0 and fields.substatement_id >= 0
        assert fields.rows is None or fields.rows >= 0

    body = message[len("AUDIT: ") :]
    batch = split_csv_many([body, "OBJECT,1,1,READ,SELECT,TABLE,t,SELECT 1,<none>", body])
    for split in (batch[0], batch[2]):
        try:
            alone: list[str] | MalformedRecord = split_csv(body)
        except MalformedRecord as exc:
            alone = exc
        if isinstance(alone, MalformedRecord):
            assert isinstance(split, MalformedRecord)
        elif body == "":
            assert split in ([], [""])  # the C reader makes no field of nothing: refused alike
        else:
            assert split == alone, "the batched splitter disagrees with the single one"

    stats = ParseStats()
    builder = EventBuilder(None, stats, control=True)
    events = builder.audits(
        [("2026-11-29 03:41:04.994 UTC", "u", "d", "a", "app", "s", 1, message)] * 2
    )
    if fields is None:
        assert events == [] and stats.malformed == 2, "a refused message was not counted"
    else:
        assert len(events) == 2 and stats.malformed == 0
        for event in events:
            _sound(event)
            assert event.statement == fields.statement
            assert event.parameters == fields.parameters
            assert event.rows == fields.rows
    for sample in stats.samples:
        _one_line(sample)


# ---------------------------------------------------------------------------------- statements


class StatementTarget:
    """A statement's text as any reader may send it: its shape (cached, and again through the
    recipe of a text with the same fingerprint), its redaction for pagers, the tamper recogniser,
    the relations it names, and one event of it through an engine. None of them may raise."""

    def __init__(self) -> None:
        from core.shapes import ShapeCache
        from tests.unit.enginekit import at, engine

        self.cache = ShapeCache()
        self.make_engine = lambda: engine(learning_hours=0)
        self.engine = self.make_engine()
        self.time_us = at(day=3)
        self.runs = 0

    def __call__(self, data: bytes) -> None:
        from collectors.controlsql import control_statement
        from collectors.relations import relations
        from core.redact import redact
        from core.shapes import shape_of
        from tests.unit.enginekit import ev

        text = data.decode("utf-8", "replace")
        for variant in (text, _DIGIT.sub("7", text)):
            self.cache.shape(variant)
        shape_of(text)
        assert isinstance(redact(text), str)
        answer = control_statement(text)
        assert answer is None or isinstance(answer, str)
        assert isinstance(relations(text), tuple)
        self.runs += 1
        if self.runs % 10_000 == 0:  # a fresh engine now and then: its state stays small
            self.engine = self.make_engine()
        self.time_us += 1_000_000
        user = f"u{zlib.crc32(data) % 50}"
        self.engine.process([ev(self.time_us, text, user=user, rows=zlib.crc32(data) % 60_000)])


_DIGIT = re.compile(r"[0-9]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# ----------------------------------------------------------------------------------- settings


_SECRET_KEYS = ("password", "token", "routing_key", "api_key", "webhook_url", "secret")


def _secrets(value: Any, key: str = "") -> Iterator[str]:
    """The string values under secret keys, anywhere in a parsed TOML document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _secrets(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _secrets(v, key)
    elif isinstance(value, str) and key in _SECRET_KEYS and len(value) >= 6:
        yield value


def settings_environment(raw: bytes) -> dict[str, str]:
    """`NAME=VALUE` lines as TABLEWATCH_* variables (the prefix added when missing); names the
    environment cannot hold are left out."""
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\n"):
        name, sep, value = line.partition("=")
        name = name.strip().upper()
        if not sep or not name or "\x00" in line or not name.isascii():
            continue
        if not name.startswith("TABLEWATCH_"):
            name = "TABLEWATCH_" + name
        out[name] = value
    return out


class SettingsTarget:
    """settings.toml from bytes, read by `load_settings`; after a NUL byte, `NAME=VALUE` lines
    are TABLEWATCH_* environment variables for that read (and only that read)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tw-fuzz-settings-"))
        self.path = self.dir / "settings.toml"
        for name in [n for n in os.environ if n.upper().startswith("TABLEWATCH_")]:
            del os.environ[name]

    def __call__(self, data: bytes) -> None:
        toml, _, env = data.partition(b"\x00")
        environment = settings_environment(env)
        self.path.write_bytes(toml)
        os.environ.update(environment)
        try:
            settings = load_settings(self.path, search=False)
        except SettingsError as exc:
            reason = str(exc)
            where = str(self.path) if reason.startswith(str(self.path)) else "environment: "
            assert reason.startswith(where), reason[:200]
            _one_line(reason[len(where) :])
            secrets = [v for k, v in environment.items() if _secret_variable(k) and len(v) >= 6]
            try:
                secrets += _secrets(tomllib.loads(toml.decode("utf-8")))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError):
                pass
            for secret in secrets:
                assert secret not in reason, "a secret's value is echoed in the error"
            return
        finally:
            for name in environment:
                os.environ.pop(name, None)
        assert isinstance(settings, Settings)


def _secret_variable(name: str) -> bool:
    return name.rsplit("__", 1)[-1].lower() in _SECRET_KEYS


# ---------------------------------------------------------------------------------------- API

ENDPOINTS = (
    "/api/v1/alerts",
    "/api/v1/alerts/{}/ack",
    "/api/v1/alerts/{}/resolve",
    "/api/v1/expected",
    "/api/v1/snooze",
    "/api/v1/backends/{}/cancel",
    "/api/v1/backends/{}/terminate",
)
CONTENT_TYPES = ("application/json", "application/json; charset=utf-8", "text/plain", None)
API_STATUSES = frozenset({200, 201, 400, 404, 405, 409, 413, 415})


def api_request(data: bytes) -> tuple[str, str | None, bytes]:
    """(path, content type, body) of a fuzz input: its first byte picks the endpoint, the
    second the content type; for an endpoint with a parameter, the bytes up to the first
    newline are the parameter, the rest the body."""
    endpoint = ENDPOINTS[data[0] % len(ENDPOINTS)] if data else ENDPOINTS[0]
    content_type = CONTENT_TYPES[data[1] % len(CONTENT_TYPES)] if len(data) > 1 else None
    rest = data[2:]
    if "{}" in endpoint:
        param, _, rest = rest.partition(b"\n")
        endpoint = endpoint.format(quote(param.decode("utf-8", "replace"), safe=""))
    return endpoint, content_type, rest


def api_input(endpoint: int, content_type: int, body: bytes, param: bytes = b"") -> bytes:
    """The fuzz input `api_request` reads back as this request."""
    head = bytes([endpoint, content_type])
    return head + (param + b"\n" if "{}" in ENDPOINTS[endpoint] else b"") + body


class ApiTarget:
    """A real agent API (aiohttp on loopback, a `LiveEngine` with one alert, a reader with a live
    backend, an operator trail and an alert outbox on disk) and one HTTP client, kept across
    inputs on one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="tw-fuzz-api-"))
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        import aiohttp

        from alerts.center import AlertCenter
        from alerts.local import LocalSink
        from alerts.outbox import OUTBOX_FILE, Outbox
        from alerts.rules import Rules
        from core.findings import PrincipalKey, Severity
        from core.view import PageRequest
        from tablewatch.api import AgentApi
        from tablewatch.live import LiveEngine
        from tablewatch.trail import OperatorTrail
        from tablewatch.web import Address, WebServer
        from tests.unit.enginekit import TABLE, at, engine, ev

        now = at(day=3, hour=10)
        center = AlertCenter(
            Outbox(self.dir / "state" / OUTBOX_FILE),
            [LocalSink(self.dir / "alerts.jsonl")],
            Rules(page_on=None),
            host="db1",
            clock=lambda: now,
        )
        self.delivery = asyncio.get_running_loop().create_task(center.run())
        live = LiveEngine(
            engine(learning_hours=0), center, trail=OperatorTrail(self.dir), clock=lambda: now
        )
        bulk = "SELECT * FROM crm.client_list"
        live.feed([ev(now - 10_000_000, bulk, user="mallory", addr="10.9.9.9", app="psql")])
        mallory = PrincipalKey("mallory", "10.9.9.9", "psql", TABLE)
        alert = await live.page(PageRequest(mallory, Severity.CRITICAL, "seed", "fuzz"))
        self.alert_key = alert.key
        self.api = AgentApi(live)
        self.server = WebServer(
            Address("127.0.0.1", 0), self.api.routes(), middlewares=self.api.middlewares(None)
        )
        await self.server.start()
        self.base = f"http://127.0.0.1:{self.server.port}"
        self.http = aiohttp.ClientSession()

    async def _post(self, data: bytes) -> None:
        path, content_type, body = api_request(data)
        path = path.replace("%40alert", self.alert_key)  # seeds name the live alert "@alert"
        headers = {"Content-Type": content_type} if content_type else {}
        async with self.http.post(self.base + path, data=body, headers=headers) as answer:
            raw = await answer.read()
            status = answer.status
        assert status in API_STATUSES, f"{path[:80]}: status {status}: {raw[:300]!r}"
        if status >= 400:
            import msgspec

            value = msgspec.json.decode(raw)
            assert isinstance(value, dict) and set(value) == {"error"}, raw[:300]
            _one_line(value["error"])

    def __call__(self, data: bytes) -> None:
        self.loop.run_until_complete(self._post(data))

    def close(self) -> None:
        async def stop() -> None:
            self.delivery.cancel()
            await asyncio.gather(self.delivery, return_exceptions=True)
            await self.http.close()
            await self.api.close()
            await self.server.stop()

        self.loop.run_until_complete(stop())
        self.loop.close()


# -------------------------------------------------------------------------------------- seeds


TARGETS: tuple[str, ...] = (
    "csvlog",
    "jsonlog",
    "stderr",
    "pgaudit",
    "settings",
    "api",
    "statement",
)


def target(name: str) -> Check:
    """The check function of a target (the settings and API targets hold state: make one per
    process)."""
    simple: dict[str, Check] = {
        "csvlog": check_csvlog,
        "jsonlog": check_jsonlog,
        "stderr": check_stderr,
        "pgaudit": check_pgaudit,
    }
    if name in simple:
        return simple[name]
    if name == "settings":
        return SettingsTarget()
    if name == "statement":
        return StatementTarget()
    if name == "api":
        return ApiTarget()
    raise ValueError(f"unknown fuzz target {name!r}, expected one of {', '.join(TARGETS)}")


_STATEMENTS = (
    "SELECT * FROM crm.client_list WHERE id = $1 LIMIT 10 OFFSET 20",
    "COPY (SELECT * FROM crm.client_list) TO STDOUT",
    "DECLARE c CURSOR FOR SELECT * FROM crm.client_list; FETCH 1000 FROM c",
    "SET pgaudit.log = 'none'; SELECT * FROM crm.client_list",
    "DO $$BEGIN EXECUTE $x$SET pgaudit.log = 'none'$x$; END$$",
    "SELECT * FROM crm.client_list WHERE name = E'it\\'s' AND id IN (1, 2, 3)",
)
_HOSTILE_STATEMENTS = (
    "SELECT * FROM crm.client_list",
    "SELECT $1, $2 FROM crm.client_list WHERE name = 'Zoë \"🙂\"'",
    'SELECT 1 /* "\n2026-11-29 03:41:04.994 UTC,"x",... */ FROM crm.client_list',
    "COPY crm.client_list TO STDOUT",
    "SELECT '[red]x[/] \x1b[31mred\x1b]0;pwned\x07'",
)


def _messages() -> list[str]:
    from tests.unit.pglog import _corpus, audit_message

    corpus = list(_corpus() or ())
    own = [audit_message(s, ("1", "Org 1,5", 'say "hi"'), rows=3) for s in _HOSTILE_STATEMENTS] + [
        audit_message(class_="ROLE", command="REVOKE", statement="REVOKE SELECT ON t FROM a"),
        audit_message(class_="MISC", command="SET", statement="SET pgaudit.log = 'none'"),
        audit_message(parameters="<not logged>", statement="<previously logged>"),
    ]
    return own + corpus[:: max(1, len(corpus) // 40)]


def seeds(name: str) -> list[bytes]:
    """Starting inputs for a target: real-shaped and small (a fuzzer grows them)."""
    from tests.unit.pglog import CHECKPOINTER, FORMATS, READER, jsonlog

    if name in ("csvlog", "jsonlog", "stderr"):
        write = FORMATS[name]
        messages = _messages()
        out = [write(m, READER) for m in messages]
        out.append(b"".join(write(m, READER) for m in messages[:4]))
        out.append(write("checkpoint starting: time", CHECKPOINTER))
        denied = "permission denied for table client_list"
        if name == "jsonlog":
            out.append(jsonlog(denied, READER, severity="ERROR", state="42501"))
        elif name == "csvlog":
            out.append(FORMATS["csvlog"](denied, READER, severity="ERROR", state="42501"))
        else:
            out.append(FORMATS["stderr"](denied, READER, severity="ERROR"))
        return out
    if name == "pgaudit":
        return [m.removeprefix("AUDIT: ").encode() for m in _messages()]
    if name == "statement":
        from collectors.pgaudit import parse_audit_message

        texts = {parse_audit_message(m).statement or "" for m in _messages()}
        texts |= set(_STATEMENTS)
        return sorted(t.encode() for t in texts if t)
    if name == "settings":
        files = [ROOT / "settings.toml", *sorted((ROOT / "deploy").glob("**/*.toml"))]
        out = [p.read_bytes() for p in files if p.is_file()]
        out += [
            b'[[tables]]\nname = "crm.client_list"\n[api]\ntoken = "0123456789abcdef0123"\n',
            b'[alerts.pagerduty]\nrouting_key = "R0UTINGKEY0123456789"\n',
            b'[[expected]]\nuser = "backup"\napplication_name = "pg_dump"\nnote = "nightly"\n',
            b'[alerts]\nquiet_hours = "22:00-07:00"\n',
            b'[[tables]]\nname = "crm.client_list"\n\x00API__TOKEN=0123456789abcdef0123\n'
            b"DATABASE__POLL_INTERVAL=5s\nALERTS__PAGE_ON=warning\n",
            b'[[tables]]\nname = "t"\n\x00ALERTS__WEBHOOK__SECRET=s3cr3t-value\nAPI__LISTEN=x\n',
        ]
        return out
    if name == "api":
        mallory = b'"user": "mallory", "client_addr": "10.9.9.9", "application_name": "psql"'
        reader = mallory + b', "table": "crm.client_list", "operator": "alice"'
        return [
            api_input(0, 0, b"{" + reader + b', "severity": "critical", "note": "n"}'),
            api_input(1, 0, b'{"operator": "alice", "note": "on it"}', b"@alert"),
            api_input(2, 0, b'{"operator": "alice"}', b"@alert"),
            api_input(3, 0, b"{" + reader + b', "note": "known"}'),
            api_input(4, 1, b"{" + reader + b', "seconds": 600}'),
            api_input(5, 0, b"{" + reader + b"}", b"4242"),
            api_input(6, 0, b"{" + reader + b"}", b"4242"),
            api_input(0, 2, b"not json"),
            api_input(4, 0, b'{"seconds": 1e400, "reasons": [{"code": "bulk_read"}]}'),
        ]
    raise ValueError(f"unknown fuzz target {name!r}")
