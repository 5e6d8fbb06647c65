"""Dashboards attached to agents (`tablewatch dashboard --agent URL`): `core.view.EngineView` over
the agent API, for one agent (`RemoteView`) or a fleet of them (`FleetView`).

A `RemoteView` keeps one server-sent-event stream open to its agent and holds the latest snapshot
it sent; the dashboard's refresh reads that, so a slow link never stalls the screen. When the
stream breaks (the agent restarts, the network drops, the agent stops answering for
STALL_SECONDS) the view says so in its sources' health (`agent <name>: disconnected since ...`),
keeps showing the agent's last snapshot, and reconnects on its own with backoff (RETRY_SECONDS
doubling to RETRY_MAX_SECONDS). Operator actions are POSTs; the agent's refusal comes back as
`ActionRefused` with its reason, an unreachable agent likewise.

A `FleetView` merges its agents' snapshots: every principal is tagged with the agent that saw it
(`PrincipalKey.agent`, shown by the dashboard as its own column) and each action goes to that
agent with the tag removed; alert keys are prefixed with the agent's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import os
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import msgspec

from alerts.center import wall_us
from core.findings import PrincipalKey
from core.safetext import safe
from core.snapshot import AlertView, Snapshot, TableView
from core.sources import SourceHealth
from core.view import ActionRefused, PageRequest
from tablewatch.api import PREFIX
from tablewatch.wire import (
    Fields,
    WireError,
    principal_json,
    read_alert,
    read_snapshot,
    reason_json,
)

CONNECT_SECONDS: Final = 5.0
ACTION_SECONDS: Final = 15.0
"""An action waits this long for the agent (a page waits up to 2 s for the sinks there)."""
STREAM_INTERVAL: Final = 1.0
STALL_SECONDS: Final = 10.0
"""No snapshot for this long on an open stream: the agent is taken as gone, and reconnected."""
RETRY_SECONDS: Final = 0.5
RETRY_MAX_SECONDS: Final = 5.0
MAX_EVENT_BYTES: Final = 64 * 1024**2
"""A streamed snapshot larger than this is refused (the agent bounds its own far below)."""
TAIL_EVENTS: Final = 500


class AgentAddressError(ValueError):
    """An `--agent` value that is not an agent's URL; `str()` is one line."""


@dataclasses.dataclass(frozen=True, slots=True)
class AgentAddress:
    """An agent as given on the command line: `[NAME=]http(s)://host:port`."""

    name: str
    url: str
    """The base URL, without a trailing slash (the API lives under `PREFIX`)."""

    @classmethod
    def parse(cls, text: str) -> AgentAddress:
        """`http://10.0.0.5:9747`, or `db1=https://db1.example:9747` to name it.

        >>> AgentAddress.parse("db1=http://10.0.0.5:9747/")
        AgentAddress(name='db1', url='http://10.0.0.5:9747')
        >>> AgentAddress.parse("http://[::1]:9747").name
        '[::1]:9747'
        """
        name, sep, rest = text.partition("=")
        if sep and "/" not in name and ":" not in name and name:
            url = rest
        else:
            name, url = "", text
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AgentAddressError(f"--agent {text!r}: expected http(s)://host:port")
        if parts.username or parts.password:
            raise AgentAddressError(
                f"--agent {text!r}: no credentials in the URL (the token comes from [api] token "
                "or TABLEWATCH_API__TOKEN)"
            )
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise AgentAddressError(f"--agent {text!r}: bad port") from None
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        return cls(name or parts.netloc, base)


def client_tls(ca_file: str) -> ssl.SSLContext | None:
    """The TLS context trusting `ca_file` ("" : aiohttp's default, the system's CAs)."""
    if not ca_file:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise AgentAddressError(f"[api] ca_file {ca_file}: {exc}") from None


class _StreamEnded(Exception):
    """The agent closed the stream."""


class _AgentFailed(Exception):
    """The agent said it could not make a snapshot (`event: error`)."""


class RemoteView:
    """An `EngineView` over one agent's API."""

    def __init__(
        self,
        address: AgentAddress,
        token: str | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        tag: bool = False,
    ) -> None:
        self.address = address
        self.token = token
        self.tls = tls
        self.tag = tag
        """Tag every principal with the agent's name (inside a fleet)."""
        self.latest: Snapshot | None = None
        self.latest_at = 0.0
        """When (monotonic) the latest snapshot arrived."""
        self.connected = False
        self.problem = ""
        """Why the link is down ("" : it has not failed yet)."""
        self.down_since_us: int | None = wall_us()
        self.reconnects = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        """The agent's name (given, or its host:port)."""
        return self.address.name

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers(),
                connector=aiohttp.TCPConnector(ssl=self.tls if self.tls is not None else True),
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    # the stream -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the agent's stream until cancelled, reconnecting whenever it breaks."""
        pause = RETRY_SECONDS
        try:
            while True:
                try:
                    await self._follow()
                except asyncio.CancelledError:
                    raise
                except _StreamEnded:
                    self._down("the agent closed the stream")
                except _AgentFailed as exc:
                    self._down(f"the agent failed: {exc}")
                except aiohttp.ServerTimeoutError:  # connecting took too long
                    self._down(f"cannot connect: no answer within {CONNECT_SECONDS:g} s")
                except TimeoutError:
                    self._down(f"no snapshot for {STALL_SECONDS:g} s")
                except aiohttp.ClientResponseError as exc:
                    self._down(f"HTTP {exc.message}")  # the status and the agent's reason
                except (aiohttp.ClientError, OSError) as exc:
                    self._down(_why(exc))
                except (WireError, msgspec.DecodeError, UnicodeDecodeError) as exc:
                    self._down(f"not a snapshot: {exc}")
                except Exception as exc:  # never stop following: say what broke, try again
                    self._down(f"{type(exc).__name__}: {exc}")
                if self.connected:  # it had worked: try again at once, then back off
                    pause = RETRY_SECONDS
                self.connected = False
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_SECONDS)
                self.reconnects += 1
        finally:
            await self.close()

    def _down(self, why: str) -> None:
        self.problem = safe(why, 200)
        if self.connected or self.down_since_us is None:
            self.down_since_us = wall_us()

    async def _follow(self) -> None:
        url = f"{self.address.url}{PREFIX}/stream?interval={STREAM_INTERVAL:g}"
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS)
        # no redirects: the token goes to the agent named on the command line, nowhere else
        async with self._http().get(url, timeout=timeout, allow_redirects=False) as answer:
            if answer.status != 200:
                raise aiohttp.ClientResponseError(
                    answer.request_info, (), status=answer.status, message=await _reason(answer)
                )
            buffer = bytearray()
            while True:
                chunk = await asyncio.wait_for(answer.content.readany(), STALL_SECONDS)
                if not chunk:
                    raise _StreamEnded
                searched = max(0, len(buffer) - 1)  # only the new bytes are searched
                buffer += chunk
                while (end := buffer.find(b"\n\n", searched)) >= 0:
                    self._take(bytes(buffer[:end]))
                    del buffer[: end + 2]
                    searched = 0
                if len(buffer) > MAX_EVENT_BYTES:
                    raise WireError(f"an event larger than {MAX_EVENT_BYTES:,} bytes")

    def _take(self, event: bytes) -> None:
        kind, data = "message", []
        for line in event.split(b"\n"):
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"event":
                kind = value.decode("utf-8", "replace")
            elif field == b"data":
                data.append(value)
        if kind not in ("snapshot", "error") or not data:
            return
        raw = msgspec.json.decode(b"\n".join(data))
        if kind == "error":
            said = raw.get("error") if isinstance(raw, dict) else None
            raise _AgentFailed(said if isinstance(said, str) else repr(raw))
        self.latest = read_snapshot(raw, self.name if self.tag else "")
        self.latest_at = time.monotonic()
        self.connected, self.problem, self.down_since_us = True, "", None

    # EngineView -------------------------------------------------------------------------------

    def health(self) -> SourceHealth:
        """The link to the agent, as a source: ok while the stream flows (its lag: the age of the
        snapshot shown)."""
        name = f"agent {self.name}"
        if self.connected and self.latest is not None:  # its lag: how old the data shown is
            taken = datetime.fromtimestamp(self.latest.taken_us / 1e6, UTC)
            return SourceHealth(name, "ok", self.address.url, last_event_time=taken)
        if not self.problem:
            return SourceHealth(name, "waiting", f"connecting to {self.address.url}")
        since = ""  # UTC, as the dashboard's clock
        if self.down_since_us is not None:
            since = time.strftime(" since %H:%M:%S", time.gmtime(self.down_since_us / 1e6))
        shown = ""
        if self.latest is not None:
            shown = time.strftime(
                "; showing its snapshot of %H:%M:%S", time.gmtime(self.latest.taken_us / 1e6)
            )
        return SourceHealth(
            name, "error", f"disconnected{since}: {self.problem}{shown}; reconnecting"
        )

    async def snapshot(self) -> Snapshot:
        """The agent's latest snapshot, with the link's health first among its sources."""
        snap = self.latest
        if snap is None:
            return Snapshot(wall_us(), (), (), 0, False, sources=(self.health(),))
        sources = snap.sources
        if not self.connected:  # what the agent last said of its sources is no news now
            when = time.strftime("%H:%M:%S", time.gmtime(snap.taken_us / 1e6))
            sources = tuple(
                dataclasses.replace(
                    h, state="waiting", detail=f"unknown since {when} (agent not answering)"
                )
                for h in sources
            )
        return dataclasses.replace(snap, sources=(self.health(), *sources))

    async def page(self, request: PageRequest) -> AlertView:
        body = {
            **principal_json(_untagged(request.principal)),
            "severity": request.severity.label,
            "note": request.note,
            "operator": request.operator,
            "reasons": [reason_json(r) for r in request.reasons],
        }
        return self._alert(await self._post(f"{PREFIX}/alerts", body))

    async def acknowledge(self, key: str, note: str, operator: str) -> AlertView:
        answer = await self._post(
            f"{PREFIX}/alerts/{key}/ack", {"note": note, "operator": operator}
        )
        return self._alert(answer)

    async def resolve(self, key: str, note: str, operator: str) -> AlertView:
        answer = await self._post(
            f"{PREFIX}/alerts/{key}/resolve", {"note": note, "operator": operator}
        )
        return self._alert(answer)

    async def mark_expected(self, principal: PrincipalKey, note: str, operator: str) -> None:
        body = {**principal_json(_untagged(principal)), "note": note, "operator": operator}
        await self._post(f"{PREFIX}/expected", body)

    async def snooze(self, principal: PrincipalKey, seconds: int, operator: str) -> None:
        body = {**principal_json(_untagged(principal)), "seconds": seconds, "operator": operator}
        await self._post(f"{PREFIX}/snooze", body)

    async def signal_backend(
        self, principal: PrincipalKey, pid: int, terminate: bool, operator: str
    ) -> str:
        """The agent signals its reader's backend (it checks the pid is one of the reader's)."""
        action = "terminate" if terminate else "cancel"
        body = {**principal_json(_untagged(principal)), "operator": operator}
        answer = await self._post(f"{PREFIX}/backends/{int(pid)}/{action}", body)
        done = answer.get("done") if isinstance(answer, dict) else None
        if not isinstance(done, str):
            raise ActionRefused(f'agent {self.name}: unexpected answer: no "done" line')
        return done  # raw, like every text from the agent: the dashboard makes it safe

    def _alert(self, raw: object) -> AlertView:
        try:
            return read_alert(Fields(raw), self.name if self.tag else "")
        except WireError as exc:
            raise ActionRefused(f"agent {self.name}: unexpected answer: {exc}") from None

    async def _post(self, path: str, body: dict[str, Any]) -> object:
        timeout = aiohttp.ClientTimeout(total=ACTION_SECONDS, connect=CONNECT_SECONDS)
        try:
            async with self._http().post(
                self.address.url + path, json=body, timeout=timeout, allow_redirects=False
            ) as answer:
                if answer.status >= 300:
                    raise ActionRefused(f"agent {self.name}: {await _reason(answer)}")
                return await answer.json()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ActionRefused(f"agent {self.name} unreachable: {_why(exc)}") from None
        except ValueError as exc:  # the answer is not JSON
            raise ActionRefused(f"agent {self.name}: unexpected answer: {exc}") from None


def _untagged(p: PrincipalKey) -> PrincipalKey:
    return dataclasses.replace(p, agent="") if p.agent else p


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return safe(f"the agent's certificate is refused: {exc.certificate_error}", 200)
    if isinstance(exc, aiohttp.ClientConnectorError):  # aiohttp's words are long: the OS's
        err = exc.os_error
        if type(err) in (OSError, ConnectionRefusedError) and err.errno and err.errno > 0:
            said = os.strerror(err.errno)
        else:  # a name that does not resolve, a TLS failure: their own words
            said = err.strerror or str(err) or type(err).__name__
        return safe(f"cannot connect: {said[:1].lower()}{said[1:]}", 200)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return safe(str(exc) or type(exc).__name__, 200)


async def _reason(answer: aiohttp.ClientResponse) -> str:
    """The agent's `{"error": ...}`, or the status line."""
    with contextlib.suppress(Exception):
        body = await answer.json(content_type=None)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return f"{answer.status} {safe(body['error'], 300)}"
    return f"{answer.status} {answer.reason or ''}".strip()


class FleetView:
    """An `EngineView` over several agents: one dashboard for the fleet."""

    def __init__(self, agents: Sequence[RemoteView]) -> None:
        names = [a.name for a in agents]
        if len(set(names)) != len(names):
            raise AgentAddressError("two --agent values share a name: name them (NAME=URL)")
        self.agents = {a.name: a for a in agents}
        for a in agents:
            a.tag = True

    @property
    def name(self) -> str:
        return f"{len(self.agents)} agents: " + ", ".join(self.agents)

    async def run(self) -> None:
        """Follow every agent until cancelled."""
        async with asyncio.TaskGroup() as group:
            for agent in self.agents.values():
                group.create_task(agent.run(), name=f"agent {agent.name}")

    async def snapshot(self) -> Snapshot:
        """The agents' snapshots merged: readers most anomalous first, the rest in time order."""
        snaps = [await agent.snapshot() for agent in self.agents.values()]
        readers = sorted(
            (r for s in snaps for r in s.readers),
            key=lambda v: (v.severity, v.score, v.last_seen_us),
            reverse=True,
        )
        alerts = sorted(
            (
                dataclasses.replace(a, key=f"{a.principal.agent}/{a.key}")
                for s in snaps
                for a in s.alerts
            ),
            key=lambda a: a.time_us,
        )
        tables: dict[str, TableView] = {}
        for s in snaps:
            for t in s.tables:
                if t.name not in tables or (t.rows or 0) > (tables[t.name].rows or 0):
                    tables[t.name] = t
        sources = []
        for name, s in zip(self.agents, snaps, strict=True):
            for h in s.sources:
                tagged = h.name if h.name.startswith("agent ") else f"{name}: {h.name}"
                sources.append(dataclasses.replace(h, name=tagged))
        tail = list(heapq.merge(*(s.tail for s in snaps), key=lambda e: e.time_us))
        findings = list(heapq.merge(*(s.findings for s in snaps), key=lambda f: f.time_us))
        return Snapshot(
            taken_us=max(s.taken_us for s in snaps),
            readers=tuple(readers),
            findings=tuple(findings[-200:]),
            events=sum(s.events for s in snaps),
            learning=any(s.learning for s in snaps),
            tables=tuple(tables.values()),
            sources=tuple(sources),
            alerts=tuple(alerts),
            tail=tuple(tail[-TAIL_EVENTS:]),
            rate=sum(s.rate for s in snaps),
            readers_total=sum(s.readers_total for s in snaps),
            suppressed=sum(s.suppressed for s in snaps),
            outbox=sum(s.outbox for s in snaps),
        )

    def _agent(self, name: str) -> RemoteView:
        agent = self.agents.get(name)
        if agent is None:
            raise ActionRefused(f"no agent named {safe(name, 80)!r} in this dashboard")
        return agent

    def _split(self, key: str) -> tuple[RemoteView, str]:
        name, sep, inner = key.rpartition("/")
        if not sep:
            raise ActionRefused(f"alert {safe(key, 80)!r}: which agent's is it?")
        return self._agent(name), inner

    async def page(self, request: PageRequest) -> AlertView:
        return _tagged(await self._agent(request.principal.agent).page(request))

    async def acknowledge(self, key: str, note: str, operator: str) -> AlertView:
        agent, inner = self._split(key)
        return _tagged(await agent.acknowledge(inner, note, operator))

    async def resolve(self, key: str, note: str, operator: str) -> AlertView:
        agent, inner = self._split(key)
        return _tagged(await agent.resolve(inner, note, operator))

    async def mark_expected(self, principal: PrincipalKey, note: str, operator: str) -> None:
        await self._agent(principal.agent).mark_expected(principal, note, operator)

    async def snooze(self, principal: PrincipalKey, seconds: int, operator: str) -> None:
        await self._agent(principal.agent).snooze(principal, seconds, operator)

    async def signal_backend(
        self, principal: PrincipalKey, pid: int, terminate: bool, operator: str
    ) -> str:
        """Routed to the agent that saw the reader (its backends are that server's)."""
        agent = self._agent(principal.agent)
        return await agent.signal_backend(principal, pid, terminate, operator)


def _tagged(alert: AlertView) -> AlertView:
    """An agent's answer with its key as the fleet shows it."""
    return dataclasses.replace(alert, key=f"{alert.principal.agent}/{alert.key}")
