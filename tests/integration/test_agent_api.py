"""The agent API (DESIGN.md) against a running `tablewatch run` on a real pgaudit csvlog: the
snapshot in the contract's shape, the stream, the operator's actions and their effect, every kind
of bad request refused with a 4xx and its reason, the token, and the refusal to listen off
loopback without one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from tablewatch.remote import AgentAddress, RemoteView
from tests.agentkit import (
    SAMPLE_EVENTS,
    configure,
    free_port,
    fresh_sample,
    next_log,
    running,
    start,
)

TOKEN = "s3cret-token-0123456789abcdef"
READER = {
    "user": "alice",
    "client_addr": "127.0.0.1",
    "application_name": "DBeaver 23.1",
    "table": "crm.client_list",
}
"""The sample's analyst who pulls the whole table (critical)."""


def _agent_log(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir(exist_ok=True)
    (tmp_path / "log" / "postgresql-1.csv").write_bytes(fresh_sample())


async def _snapshot(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/v1/snapshot") as answer:
        assert answer.status == 200, await answer.text()
        assert answer.content_type == "application/json"
        body: dict[str, Any] = await answer.json()
        return body


async def _caught_up(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    for _ in range(300):
        snap = await _snapshot(http, base)
        if snap["events"] >= SAMPLE_EVENTS:
            return snap
        await asyncio.sleep(0.1)
    raise AssertionError(f"the agent read {snap['events']} events, expected {SAMPLE_EVENTS}")


async def _post(
    http: aiohttp.ClientSession, url: str, body: object, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body, **kw) as answer:
        return answer.status, await answer.json()


async def test_snapshot_stream_and_actions(tmp_path: Path) -> None:
    _agent_log(tmp_path)
    port = free_port()
    config = configure(tmp_path, free_port(), api=f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    async with running(config) as agent, aiohttp.ClientSession() as http:
        started = await next_log(agent, "started")
        assert started["api"] == f"{base}/api/v1"
        snap = await _caught_up(http, base)
        # the contract's shape: taken_at, readers with the principal's four fields, severity,
        # score and reasons ({code, detail}), findings, sources, alerts
        assert {"taken_at", "readers", "findings", "sources", "alerts"} <= snap.keys()
        assert snap["taken_at"].endswith("+00:00")
        alice = next(r for r in snap["readers"] if r["user"] == "alice")
        assert alice["severity"] == "critical" and 80 <= alice["score"] <= 100
        assert {k: alice[k] for k in READER} == READER
        assert "bulk_read" in {r["code"] for r in alice["reasons"]}
        assert all(set(r) >= {"code", "detail"} for r in alice["reasons"])
        assert [s["name"] for s in snap["sources"]] == ["audit_log"]
        assert snap["sources"][0]["state"] == "ok"
        assert any(f["user"] == "alice" and f["severity"] == "critical" for f in snap["findings"])
        rules = [a for a in snap["alerts"] if a["origin"] == "rule"]
        assert {a["user"] for a in rules} >= {"alice"}  # the rule paged by itself

        # the stream: a snapshot about every interval, as server-sent events
        t0 = time.monotonic()
        async with http.get(f"{base}/api/v1/stream?interval=0.3") as stream:
            assert stream.status == 200
            assert stream.content_type == "text/event-stream"
            seen = []
            while len(seen) < 3:
                line = await asyncio.wait_for(stream.content.readline(), 5)
                if line.startswith(b"data: "):
                    seen.append(json.loads(line[6:]))
        assert time.monotonic() - t0 < 4
        assert all(s["events"] == SAMPLE_EVENTS for s in seen)
        assert seen[0]["taken_at"] < seen[-1]["taken_at"]

        # page, acknowledge, resolve: each answered with the alert as it stands
        status, alert = await _post(
            http,
            f"{base}/api/v1/alerts",
            {**READER, "severity": "critical", "note": "[b]whole list[/b]", "operator": "ann"},
        )
        assert status == 201, alert
        assert alert["origin"] == "operator" and alert["operator"] == "ann"
        assert alert["note"] == "[b]whole list[/b]" and alert["state"] == "active"
        assert [(d["sink"], d["state"]) for d in alert["deliveries"]] == [("local", "sent")]
        key = alert["key"]
        status, acked = await _post(
            http, f"{base}/api/v1/alerts/{key}/ack", {"operator": "ann", "note": "on it"}
        )
        assert status == 200 and acked["state"] == "acknowledged" and acked["by"] == "ann"
        status, done = await _post(http, f"{base}/api/v1/alerts/{key}/resolve", {"operator": "bo"})
        assert status == 200 and done["state"] == "resolved"
        status, again = await _post(http, f"{base}/api/v1/alerts/{key}/resolve", {"operator": "bo"})
        assert status == 409 and "resolved" in again["error"]
        now = await _snapshot(http, base)
        assert next(a for a in now["alerts"] if a["key"] == key)["state"] == "resolved"

        # expected and snooze change what the next snapshot says of the reader
        status, answer = await _post(
            http,
            f"{base}/api/v1/expected",
            {**READER, "note": "quarterly audit", "operator": "ann"},
        )
        assert status == 200, answer
        status, answer = await _post(
            http, f"{base}/api/v1/snooze", {**READER, "seconds": 600, "operator": "ann"}
        )
        assert status == 200, answer
        after = next(r for r in (await _snapshot(http, base))["readers"] if r["user"] == "alice")
        assert after["expected"] == "quarterly audit"
        assert after["snoozed_until"] is not None
        trail = (tmp_path / "state" / "operator-trail.jsonl").read_text().splitlines()
        actions = [json.loads(line)["action"] for line in trail]
        assert actions == ["page", "acknowledge", "resolve", "expected", "snooze"]

        # SIGTERM with a stream open: the stream ends, the agent exits 0 at once
        async with http.get(f"{base}/api/v1/stream") as stream:
            await stream.content.readline()
            t0 = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 10) == 0
        assert time.monotonic() - t0 < 5


async def test_bad_requests_are_refused_with_a_reason(tmp_path: Path) -> None:
    _agent_log(tmp_path)
    port = free_port()
    config = configure(tmp_path, free_port(), api=f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}/api/v1"
    page = {**READER, "severity": "critical", "operator": "ann"}
    async with running(config) as agent, aiohttp.ClientSession() as http:
        await next_log(agent, "started")
        await _caught_up(http, base.removesuffix("/api/v1"))

        async def refused(method: str, path: str, status: int, **kw: Any) -> str:
            async with http.request(method, base + path, **kw) as answer:
                assert answer.status == status, (path, await answer.text())
                assert answer.content_type == "application/json"
                error = (await answer.json())["error"]
                assert isinstance(error, str) and error and "\n" not in error
                return error

        assert "not JSON" in await refused(
            "POST", "/alerts", 400, data=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert "Content-Type" in await refused("POST", "/alerts", 415, data=b"user=alice")
        assert "body" in await refused("POST", "/alerts", 400, json=["a", "list"])
        assert await refused("POST", "/alerts", 400, json={**page, "user": None}) == (
            "user: expected a string"
        )
        assert "severity: expected one of" in await refused(
            "POST", "/alerts", 400, json={**page, "severity": "apocalyptic"}
        )
        assert "operator" in await refused("POST", "/alerts", 400, json={**page, "operator": " "})
        missing = {k: v for k, v in page.items() if k != "table"}
        assert await refused("POST", "/alerts", 400, json=missing) == "table: missing"
        assert "not watched" in await refused(
            "POST", "/alerts", 400, json={**page, "table": "public.other"}
        )
        assert "characters" in await refused(
            "POST", "/alerts", 400, json={**page, "note": "x" * 5000}
        )
        assert "larger" in await refused(
            "POST", "/alerts", 413, json={**page, "note": "x" * 100_000}
        )
        assert "reasons[0].code: missing" in await refused(
            "POST", "/alerts", 400, json={**page, "reasons": [{"detail": "?"}]}
        )
        assert "no alert" in await refused(
            "POST", "/alerts/tw-nope/ack", 404, json={"operator": "a"}
        )
        assert "seconds: expected an integer" in await refused(
            "POST", "/snooze", 400, json={**READER, "seconds": "10", "operator": "a"}
        )
        assert "at most" in await refused(
            "POST", "/snooze", 400, json={**READER, "seconds": 10**9, "operator": "a"}
        )
        signal = {**READER, "operator": "ann"}
        assert await refused("POST", "/backends/4x/cancel", 400, json=signal) == (
            "pid: expected a backend's process id, got '4x'"
        )
        assert "pid: expected" in await refused("POST", "/backends/0/terminate", 400, json=signal)
        assert "operator: missing" in await refused(
            "POST", "/backends/4242/terminate", 400, json=READER
        )
        assert "not watched" in await refused(
            "POST", "/backends/4242/cancel", 400, json={**signal, "table": "public.other"}
        )
        # no [database] dsn in this agent's settings: it says so rather than trying
        assert await refused("POST", "/backends/4242/cancel", 409, json=signal) == (
            "no [database] dsn is configured: tablewatch cannot reach the server's backends"
        )
        assert "not allowed" in await refused("GET", "/backends/4242/cancel", 405)
        assert "not allowed" in await refused("GET", "/alerts", 405)
        assert "no such endpoint" in await refused("GET", "/nothing", 404)
        assert "interval" in await refused("GET", "/stream?interval=0", 400)
        assert "interval" in await refused("GET", "/stream?interval=soon", 400)
        # no token, so loopback only: a page that rebinds its own name to 127.0.0.1 is refused
        assert "loopback host only" in await refused(
            "GET", "/snapshot", 403, headers={"Host": "evil.example"}
        )
        # none of it reached the alerts
        assert not (tmp_path / "state" / "operator-trail.jsonl").exists()
        assert agent.returncode is None


async def test_the_token_and_listening_off_loopback(tmp_path: Path) -> None:
    _agent_log(tmp_path)
    port = free_port()
    (tmp_path / "open").mkdir()
    config = configure(tmp_path / "open", free_port(), api=f"0.0.0.0:{port}")
    agent = await start(config)
    refused = await next_log(agent, "refused")
    assert "reachable from other machines" in refused["detail"]
    assert "TABLEWATCH_API__TOKEN" in refused["detail"]
    assert await agent.wait() == 2

    config = configure(tmp_path, free_port(), api=f"0.0.0.0:{port}", token=TOKEN)
    base = f"http://127.0.0.1:{port}/api/v1"
    async with running(config) as agent, aiohttp.ClientSession() as http:
        await next_log(agent, "started")
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": "Bearer \xff\xfe"},  # not UTF-8: still a 401, never a 500
        ):
            async with http.get(f"{base}/snapshot", headers=headers) as answer:
                assert answer.status == 401
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                assert "token" in (await answer.json())["error"]
        async with http.post(f"{base}/alerts", json={**READER, "severity": "critical",
                             "operator": "x"}) as answer:  # fmt: skip
            assert answer.status == 401
        async with http.get(
            f"{base}/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as answer:
            assert answer.status == 200
            assert "readers" in await answer.json()
        # a dashboard with the token follows the agent; one without is told why it cannot
        for token, state in ((TOKEN, "ok"), (None, "error")):
            view = RemoteView(AgentAddress.parse(f"http://127.0.0.1:{port}"), token)
            task = asyncio.create_task(view.run())
            try:
                for _ in range(100):
                    link = (await view.snapshot()).sources[0]
                    if link.state == state:
                        break
                    await asyncio.sleep(0.1)
                assert link.state == state, link
                if token is None:
                    assert "HTTP 401 a valid token is required" in link.detail
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
