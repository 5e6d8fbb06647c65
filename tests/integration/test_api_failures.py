"""When the agent itself fails to make a snapshot (a bug), the API says so: a 500 with what broke
rather than a connection cut short, and a dashboard following it shows the agent's words."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from core.findings import PrincipalKey
from core.snapshot import AlertView, Snapshot
from core.view import PageRequest
from tablewatch.api import AgentApi
from tablewatch.remote import AgentAddress, RemoteView
from tablewatch.web import Address, WebServer


class BrokenEngine:
    """An engine view whose snapshot fails, as a bug would make it."""

    name = "broken"

    async def snapshot(self) -> Snapshot:
        raise RuntimeError("boom [red]x[/]")

    async def page(self, request: PageRequest) -> AlertView:
        raise NotImplementedError

    async def mark_expected(self, principal: PrincipalKey, note: str, operator: str) -> None:
        raise NotImplementedError

    async def snooze(self, principal: PrincipalKey, seconds: int, operator: str) -> None:
        raise NotImplementedError

    async def signal_backend(
        self, principal: PrincipalKey, pid: int, terminate: bool, operator: str
    ) -> str:
        raise NotImplementedError

    async def acknowledge(self, key: str, note: str, operator: str) -> AlertView:
        raise NotImplementedError

    async def resolve(self, key: str, note: str, operator: str) -> AlertView:
        raise NotImplementedError


async def test_a_failing_snapshot_is_said_not_cut_short() -> None:
    api = AgentApi(BrokenEngine())
    server = WebServer(Address("127.0.0.1", 0), api.routes(), middlewares=api.middlewares(None))
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/snapshot") as answer:
                assert answer.status == 500
                assert (await answer.json())["error"] == (
                    "internal error: RuntimeError: boom [red]x[/]"
                )
        view = RemoteView(AgentAddress.parse(base))
        task = asyncio.create_task(view.run())
        try:
            for _ in range(50):
                link = (await view.snapshot()).sources[0]
                if "the agent failed" in link.detail:
                    break
                await asyncio.sleep(0.1)
            assert link.state == "error"
            assert "the agent failed: internal error: RuntimeError: boom" in link.detail
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await api.close()
        await server.stop()
