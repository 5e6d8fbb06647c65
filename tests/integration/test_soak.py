"""The soak bench's quick variant (bench/soak_bench.py), and the TCP proxy it flaps the database
connection with (tests/tcpproxy.py).

The soak: 45 s of a synthetic PostgreSQL 15 csvlog at 1,000 records/s, rotated every 10 s (a new
file each time, the old kept), the agent's database connection dropped by the proxy every 14 s
for 5 s, the webhook answering 503 to a seeded 20% of requests, a never-seen principal reading
the whole table every ~10 s. It checks what could go wrong over a long run, in small: every
record reaches the `tablewatch tail` consumer exactly once (against `tablewatch replay --events`
over the rotated files), the agent counts each once, each flap is seen by every database source
and each comes back, every alert raised reaches the receiver despite the failures (and some did
fail first), the agent's open files stay bounded, and SIGTERM ends it with status 0. No timed
assertions: this machine is shared.
"""

from __future__ import annotations

import importlib
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tablewatch.pgcluster import PgCluster
from tests.tcpproxy import TcpProxy

BENCH = Path(__file__).resolve().parents[2] / "bench"
FD_GROWTH = 3
"""Open fds at the end (writer stopped, sources up) against the most before the first flap:
a leak per flap (4 database connections) or per rotation (4 of them) shows."""


def soak_bench() -> ModuleType:
    """bench/soak_bench.py, imported as the benches import each other (bench/ on sys.path, which
    its spawned writer and receiver inherit)."""
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    return importlib.import_module("soak_bench")


# --------------------------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(4096):
                self.request.sendall(data)
        except OSError:  # reset by the proxy's drop
            pass


@pytest.fixture
def echo() -> Iterator[int]:
    """A real TCP echo server on 127.0.0.1; its port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _roundtrip(port: int, data: bytes) -> bytes:
    """Connect, send `data`, read as much back (b"" when the connection is reset or closed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                got += chunk
            return got
    except OSError:
        return b""


def test_proxy_forwards_drops_and_restores(echo: int) -> None:
    with TcpProxy("127.0.0.1", echo) as proxy:
        assert proxy.port and proxy.port != echo
        assert _roundtrip(proxy.port, b"hello") == b"hello"
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as held:
            held.sendall(b"ping")
            assert held.recv(16) == b"ping"
            assert proxy.drop() == 1  # the held connection is cut...
            try:
                cut = held.recv(16)
            except ConnectionResetError:
                cut = b""
            assert cut == b""
        assert proxy.down
        assert _roundtrip(proxy.port, b"anyone?") == b""  # ...and new ones are reset
        proxy.restore()
        assert _roundtrip(proxy.port, b"again" * 10_000) == b"again" * 10_000
        assert (proxy.accepted, proxy.dropped, proxy.refused, proxy.drops) == (3, 1, 1, 1)


def test_proxy_counts_a_target_that_does_not_answer() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connection refused
        with TcpProxy("127.0.0.1", port) as proxy:
            assert _roundtrip(proxy.port, b"x") == b""
            assert (proxy.accepted, proxy.failed) == (0, 1)


# --------------------------------------------------------------------------------------------
# The soak, quick
# --------------------------------------------------------------------------------------------


def test_the_record_check_finds_lost_and_duplicated_lines() -> None:
    """The soak's check (multisets of whole lines, streamed) sees a loss, a repeat, a shift."""
    compare = soak_bench().compare
    same = compare([b"a\n", b"b\n", b"c\n"], [b"a\n", b"b\n", b"c\n"])
    assert (same.truth, same.got, same.lost, same.duplicates) == (3, 3, 0, 0)
    shifted = compare([b"a\n", b"b\n", b"c\n", b"d\n"], [b"b\n", b"c\n", b"d\n", b"d\n"])
    assert (shifted.lost, shifted.duplicates) == (1, 1)
    assert shifted.lost_examples == ["a"] and shifted.duplicate_examples == ["d"]
    twice = compare([b"x\n", b"x\n"], [b"x\n"])
    assert (twice.lost, twice.duplicates) == (1, 0)


@pytest.mark.postgres
@pytest.mark.slow
def test_soak_quick(pg_factory: Callable[[dict[str, str]], PgCluster], tmp_path: Path) -> None:
    bench = soak_bench()
    options = bench.Options(
        seconds=45.0,
        rate=1000,
        rotate_every=10.0,
        flap_every=14.0,
        flap_down=5.0,
        fail_rate=0.2,
        seed=1,  # the receiver's first answer is a 503: a retry is certain
        intruder_every=10.0,
        db_interval="1s",
        sample_every=2.0,
        warmup=10.0,
        catchup_timeout=60.0,
        drain_timeout=60.0,
    )
    pg = pg_factory(bench.CLUSTER_SETTINGS)
    r = bench.soak(options, pg, tmp_path)
    report = "\n".join(bench.report(r, "test_soak_quick"))
    w, c = r.written, r.comparison

    # every record once, by the tail consumer and by the agent
    assert c.truth == w.watched > 30_000, report
    assert (c.lost, c.duplicates) == (0, 0), report
    assert c.got == c.truth
    assert r.agent_events == c.truth, report
    assert r.final["parse_errors"] == r.final["lost_bytes"] == 0, report
    assert len(w.rotations) >= 2 and len(w.files) == len(w.rotations) + 1
    assert r.audit_source["rotations"] >= 2, report

    # every flap seen by each database source, each back afterwards
    assert not r.flapper_error, report
    assert len(r.flaps) >= 2, report
    for flap in r.flaps:
        assert flap.cut >= 1, report
        assert set(flap.down_at) == set(bench.DB_SOURCES), report
        assert set(flap.up_at) == set(bench.DB_SOURCES), report

    # every alert delivered despite the failures, some of them after a 503
    alerts = bench.alert_figures(r)
    assert alerts.intruders >= 2, report
    assert alerts.intruders_paged == alerts.intruders, report
    assert alerts.raised >= alerts.intruders, report
    assert alerts.lost == [], report
    assert alerts.unknown == [], report
    assert alerts.answered_503 >= 1 and alerts.retried_keys >= 1, report
    assert r.final["retry"] >= 1 and r.final["failed"] == 0, report
    assert r.final["outbox"] == 0 and r.final["suppressed"] == 0, report

    # bounded open files, a clean stop
    fds = [s.fds for s in r.samples]
    before = [s.fds for s in r.samples if s.t < r.flaps[0].dropped_at]
    assert before and min(fds) > 0, report
    assert max(fds) - min(fds) <= bench.FD_SPREAD, report
    assert fds[-1] <= max(before) + FD_GROWTH, report
    assert r.troubles == [], report
    assert (r.agent_status, r.tail_status) == (0, 0), report
    assert not bench.failed(r), report
