"""The server's own processes: the checkpointer, autovacuum and the postmaster's reload."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tests.scenario.constants import DAY, MINUTE
from tests.scenario.csvlog import Session

if TYPE_CHECKING:
    from tests.scenario.run import Proc, Run


def checkpointer(run: Run) -> Proc:
    rng, w = random.Random(run.rng.getrandbits(64)), run.w
    cp = Session(
        "", "", "", w.start_ms - 5 * DAY - 7_777_000, 1_210, rng, btype="checkpointer", db=""
    )
    t = run.log.t
    while True:
        run.log.emit(cp, "", "checkpoint starting: time")
        took = rng.uniform(20, 270)
        bufs = rng.randint(200, 9000)
        msg = (
            f"checkpoint complete: wrote {bufs} buffers ({bufs / 163.84:.1f}%); "
            f"0 WAL file(s) added, 0 removed, {rng.randint(0, 3)} recycled; "
            f"write={took:.3f} s, sync={rng.uniform(0, 0.05):.3f} s, "
            f"total={took + 0.02:.3f} s; sync files={rng.randint(5, 90)}, "
            f"longest=0.00{rng.randint(1, 9)} s, average=0.001 s; "
            f"distance={bufs * 8} kB, estimate={bufs * 9} kB"
        )
        yield t + int(took * 1000)
        run.log.emit(cp, "", msg)
        t += 5 * MINUTE
        yield t


def autovacuum(run: Run) -> Proc:
    rng = random.Random(run.rng.getrandbits(64))
    t = run.log.t
    while True:
        s = Session("", "", "", t, run.pids(), rng, btype="autovacuum worker", db="")
        tbl = rng.choice(["crm.crm.client_list", "crm.crm.orders", "crm.pg_catalog.pg_statistic"])
        run.log.emit(
            s,
            "",
            f'automatic analyze of table "{tbl}"\n'
            f"avg read rate: {rng.uniform(0, 40):.3f} MB/s, avg write rate: 0.000 MB/s\n"
            f"buffer usage: {rng.randint(100, 90_000)} hits, {rng.randint(0, 900)} misses, "
            f"0 dirtied\nsystem usage: CPU: user: {rng.uniform(0, 0.4):.2f} s, "
            f"system: 0.00 s, elapsed: {rng.uniform(0, 1.5):.2f} s",
            vxid=s.vxid(),
        )
        t += rng.randint(15 * MINUTE, 70 * MINUTE)
        yield t


def reload(run: Run, setting: str, ends_object_audit: bool) -> Proc:
    """`SELECT pg_reload_conf()`: the postmaster rereads the configuration."""
    rng = run.attack_rng
    pm = Session(
        "", "", "", run.w.start_ms - 5 * DAY - 7_780_000, 1_201, rng, btype="postmaster", db=""
    )
    run.log.emit(pm, "", "received SIGHUP, reloading configuration files")
    value = "" if ends_object_audit else "none"
    run.log.emit(pm, "", f'parameter "{setting}" changed to "{value}"')
    if ends_object_audit:
        run.object_audit = False
    yield from ()
