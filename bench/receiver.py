#!/usr/bin/env python3
"""A local HTTP receiver for the alerts bench: takes every POST (200), notes when it arrived.

    .venv/bin/python bench/receiver.py PORT_FILE

Listens on 127.0.0.1 at a free port (written to PORT_FILE once listening). `GET /stats` returns
`[[arrival_unix_seconds, key], ...]` (the key: the webhook's `key`, PagerDuty's `dedup_key`),
`DELETE /stats` forgets them. Runs in its own process so that the bench's numbers are the
sender's alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from aiohttp import web

arrivals: list[tuple[float, str]] = []


async def take(request: web.Request) -> web.Response:
    at = time.time()
    body = await request.read()
    try:
        data = json.loads(body)
        key = str(data.get("key") or data.get("dedup_key") or "")
    except (ValueError, AttributeError):
        key = ""
    arrivals.append((at, key))
    return web.Response(status=200, text="ok")


async def stats(request: web.Request) -> web.Response:
    if request.method == "DELETE":
        arrivals.clear()
        return web.json_response([])
    return web.json_response(arrivals)


def main() -> None:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_route("GET", "/stats", stats)
    app.router.add_route("DELETE", "/stats", stats)
    app.router.add_route("POST", "/{tail:.*}", take)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = str(runner.addresses[0][1])
        await asyncio.to_thread(Path(sys.argv[1]).write_text, port)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
