"""A small TCP proxy of our own, to cut a client off its server and let it back on.

    with TcpProxy("127.0.0.1", pg.port) as proxy:   # listens on 127.0.0.1:proxy.port
        dsn = f"postgresql://monitor@127.0.0.1:{proxy.port}/postgres"
        ...
        proxy.drop()      # every open connection is reset; new ones are reset at once
        proxy.restore()   # new connections go through again

Why our own: the soak bench (bench/soak_bench.py) and its quick variant in the suite flap the
agent's database connection on a schedule, and a real outage looks like this from the client's
side: established connections die (a TCP reset, not a polite close) and reconnecting fails until
the network is back. Stopping the server would instead test PostgreSQL's restart, and a firewall
rule needs privileges and leaks past a crashed test. While down the proxy keeps listening (so its
port cannot be taken by someone else) and resets what it accepts: the client sees "connection
reset", as from a host whose service is gone.

The proxy runs its own asyncio loop in a daemon thread, so a synchronous bench and a pytest test
(sync or async, with a loop of its own) drive it the same way; the methods are thread-safe.
Counters: `accepted` (connections forwarded), `dropped` (open connections cut by `drop`),
`refused` (connections reset while down), `failed` (the target did not answer), `drops`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["TcpProxy"]

_T = TypeVar("_T")
CHUNK = 64 * 1024
CONNECT_SECONDS = 5.0
CALL_SECONDS = 10.0
"""How long a caller waits for the proxy's loop to carry out drop, restore or stop."""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dead peer does, not with a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until end of stream or an error of either side."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()


class _Link:
    """One forwarded connection: the client's side and the target's."""

    def __init__(self, client: asyncio.StreamWriter, target: asyncio.StreamWriter) -> None:
        self.client = client
        self.target = target

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.target)

    def close(self) -> None:
        self.client.close()
        self.target.close()


class TcpProxy:
    """Forwards 127.0.0.1:`port` (0: a free one, known after `start`) to target_host:target_port;
    `drop` cuts everything until `restore`."""

    def __init__(
        self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self.accepted = 0
        self.dropped = 0
        self.refused = 0
        self.failed = 0
        self.drops = 0
        self._down = False
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- the caller's side (any thread) -------------------------------------------------------

    def start(self) -> Self:
        """Listen (in the proxy's own thread); returns once `port` is bound."""
        self._thread = threading.Thread(target=self._serve, name="tcpproxy", daemon=True)
        self._thread.start()
        self._ready.wait(CALL_SECONDS)
        if self._error is not None:
            raise RuntimeError(f"the proxy could not listen: {self._error}") from self._error
        if not self._ready.is_set():
            raise RuntimeError("the proxy did not start")
        return self

    @property
    def down(self) -> bool:
        return self._down

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def drop(self) -> int:
        """Reset every open connection and every new one until `restore`; how many were cut."""
        return self._call(self._drop())

    def restore(self) -> None:
        """Forward new connections again."""
        self._call(self._restore())

    def stop(self) -> None:
        """Close the listener and every connection; the thread ends. Safe to call twice."""
        if self._loop is not None and self._stopping is not None and self._loop.is_running():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(CALL_SECONDS)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_SECONDS)

    # -- the proxy's loop ---------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start(); a thread must not raise
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for link in list(self._links):
                link.reset()
            # let every connection's handler see its reset and close its sockets
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()

    async def _drop(self) -> int:
        self._down = True
        self.drops += 1
        cut = list(self._links)
        for link in cut:
            link.reset()
        self.dropped += len(cut)
        return len(cut)

    async def _restore(self) -> None:
        self._down = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONNECT_SECONDS
            )
        except (OSError, TimeoutError):
            self.failed += 1
            _reset(writer)
            return
        link = _Link(writer, up_writer)
        if self._down:  # dropped while we were connecting
            self.refused += 1
            link.reset()
            return
        self.accepted += 1
        self._links.add(link)
        try:
            one = asyncio.ensure_future(_pipe(reader, up_writer))
            two = asyncio.ensure_future(_pipe(up_reader, writer))
            await asyncio.wait((one, two), return_when=asyncio.FIRST_COMPLETED)
            link.close()  # one side ended: end the other
            await asyncio.gather(one, two, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.close()
