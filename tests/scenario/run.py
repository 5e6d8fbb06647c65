"""The run: processes on a heap of wake-up times, writing records in time order."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tests.scenario.analysts import analyst
from tests.scenario.apphosts import app_host, rate_table
from tests.scenario.attacks import Plan
from tests.scenario.constants import ATTACKS, HOUR, MINUTE, SECOND, WATCHED
from tests.scenario.csvlog import Log, Pids, Session, Statement
from tests.scenario.manifest import Attack, Manifest, Principal
from tests.scenario.routines import backup, dba_days, reporting
from tests.scenario.server import autovacuum, checkpointer
from tests.scenario.world import World

Proc = Iterator[int]
"""A process: a generator that writes records at the current time and yields its next wake-up."""


class AttackRun:
    """What an attack really wrote: first and last audit record, rows, the half-table time."""

    def __init__(self, plan: Plan, table_rows: int) -> None:
        self.plan = plan
        self.table_rows = table_rows
        self.first = self.last = -1
        self.rows = 0
        self.half: int | None = None

    def saw(self, t: int, rows: int) -> None:
        if self.first < 0:
            self.first = t
        self.last = t
        self.rows += rows
        if self.half is None and self.rows * 2 >= self.table_rows:
            self.half = t


class Run:
    """Writes a World's traffic to a csvlog file."""

    def __init__(self, world: World, log: Log, attacks: Sequence[str]) -> None:
        self.w = world
        self.log = log
        self.rng = random.Random(world.runtime_seed)
        self.attack_rng = random.Random(world.runtime_seed ^ 0x5EED)
        self.pids = Pids(random.Random(world.runtime_seed + 1), 20_000)
        self.heap: list[tuple[int, int, Proc]] = []
        self.seq = itertools.count()
        self.watched_audit = True
        """Object audit of the watched table (false after REVOKE ... FROM auditor)."""
        self.object_audit = True
        """Object audit at all (false after pgaudit.role = '' and a reload)."""
        self.quiet_roles: set[str] = set()
        """Roles whose new sessions have pgaudit.log = 'none'."""
        self.benign: dict[Principal, None] = {}
        self.readers = {a.user for a in world.analysts}
        """Roles with session audit of reads (`ALTER ROLE ... SET pgaudit.log = 'read'`)."""
        self.runs = [AttackRun(p, world.rows) for p in world.plans if p.name in attacks]
        self.rates = rate_table(world)
        """App lookups per second per host, per 5 minutes (`apphosts.rate_table`)."""

    # ---- scheduling ------------------------------------------------------------------------

    def spawn(self, at: int, proc: Proc) -> None:
        heapq.heappush(self.heap, (at, next(self.seq), proc))

    def run(self) -> None:
        w, heap, log = self.w, self.heap, self.log
        self.spawn(w.start_ms + self.rng.randint(0, 5 * MINUTE), checkpointer(self))
        self.spawn(w.start_ms + self.rng.randint(0, 30 * MINUTE), autovacuum(self))
        for host in w.app_hosts:
            self.spawn(host.join_ms, app_host(self, host, random.Random(self.rng.getrandbits(64))))
        if w.new_host is not None:
            rng = random.Random(self.rng.getrandbits(64))
            self.spawn(w.new_host.join_ms, app_host(self, w.new_host, rng))
        self.spawn(w.start_ms, reporting(self, random.Random(self.rng.getrandbits(64))))
        self.spawn(w.start_ms, backup(self, random.Random(self.rng.getrandbits(64))))
        self.spawn(w.start_ms, dba_days(self, random.Random(self.rng.getrandbits(64))))
        for a in w.analysts:
            self.spawn(w.start_ms, analyst(self, a, random.Random(self.rng.getrandbits(64))))
        for run in self.runs:
            self.spawn(run.plan.start_ms - 60 * SECOND, self.attack(run))
        end = w.end_ms
        while heap:
            at, _, proc = heapq.heappop(heap)
            if at >= end:
                break  # everything left is later: the file ends here
            if at > log.t:
                log.t = at
            nxt = next(proc, None)
            if nxt is not None:
                heapq.heappush(heap, (nxt, next(self.seq), proc))
        log.flush()

    # ---- records ---------------------------------------------------------------------------

    def connect(self, user: str, host: str, app: str, *, attack: bool = False) -> Session:
        """A new backend: `connection received` now; call `authorized` a few ms later."""
        # an attacker's backend gets a pid near the current ones without taking one from the
        # benign sequence (so benign traffic stays the same whichever attacks are written)
        pid = self.pids.pid + self.attack_rng.randint(1, 9) if attack else self.pids()
        s = Session(user, host, app, self.log.t, pid, self.attack_rng if attack else self.rng)
        # Before the startup packet: no user, database or application_name yet.
        head, tail = s.head, s.tail
        s.head = f",,,{s.pid},{s.conn},{s.sid},"
        s.tail = ',"","client backend",,'
        port = f" port={s.port}" if host != "[local]" else ""
        self.log.emit(s, '""', f"connection received: host={host}{port}")
        s.head, s.tail = head, tail
        s.session_read = user in self.readers and user not in self.quiet_roles
        s.once = user == "reporting"
        s.misc = user == self.w.dba.user
        return s

    def authorized(self, s: Session) -> None:
        ssl = (
            ""
            if s.host == "[local]"
            else " SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"
        )
        app = f" application_name={s.app}" if s.app else ""
        tail = s.tail
        s.tail = ',"","client backend",,'  # the GUC is set after authentication
        self.log.emit(
            s,
            '"authentication"',
            f"connection authorized: user={s.user} database={s.db}{app}{ssl}",
            vxid=f"{s.backend_id}/0",
        )
        s.tail = tail

    def disconnect(self, s: Session) -> None:
        el = self.log.t - s.start_ms
        h, rem = divmod(el, HOUR)
        m, rem = divmod(rem, MINUTE)
        port = f" port={s.port}" if s.host != "[local]" else ""
        self.log.emit(
            s,
            '"idle"',
            f"disconnection: session time: {h}:{m:02d}:{rem / 1000:06.3f} user={s.user} "
            f"database={s.db} host={s.host}{port}",
        )

    def audit(
        self, s: Session, st: Statement, params: str, rows: int, run: AttackRun | None = None
    ) -> None:
        """The records pgaudit writes for one read of `st.objects` (in range-table order)."""
        s.lxid += 1
        row_part = f",{rows}" if self.log.log_rows else ""
        logged = False
        vx = ""
        for obj in st.objects:
            obj_on = s.object_audit and self.object_audit and (self.watched_audit or obj != WATCHED)
            if not (obj_on or s.session_read):
                continue
            if not logged:
                s.stmt_id += 1
                vx = s.vxid()
            for kind, on in (("OBJECT", obj_on), ("SESSION", s.session_read)):
                if not on:
                    continue
                if s.once and logged:
                    text, prm = "<previously logged>", "<previously logged>"
                else:
                    text, prm = st.quoted, params
                self.log.emit(
                    s,
                    st.tag,
                    f"AUDIT: {kind},{s.stmt_id},1,{st.cls},{st.command},TABLE,{obj},{text},"
                    f"{prm}{row_part}",
                    vxid=vx,
                    qid=st.qid,
                )
                self.log.audits += 1
                logged = True
        if logged:
            if run is not None:
                run.saw(self.log.t, rows)
            elif s.principal not in self.benign:
                self.benign[s.principal] = None

    def utility(self, s: Session, st: Statement, object_type: str = "") -> None:
        """The SESSION record of a role/ddl/misc statement (the DBA's session audit)."""
        s.lxid += 1
        if not s.misc:
            return
        s.stmt_id += 1
        rp = ",0" if self.log.log_rows else ""
        self.log.emit(
            s,
            st.tag,
            f"AUDIT: SESSION,{s.stmt_id},1,{st.cls},{st.command},{object_type},,{st.quoted},"
            f"<none>{rp}",
            vxid=s.vxid(),
        )
        self.log.audits += 1

    def duration(self, s: Session, st: Statement, ms: float, detail: str | None = None) -> None:
        what = "execute <unnamed>" if detail is not None else "statement"
        self.log.emit(
            s,
            st.tag,
            f"duration: {ms:.3f} ms  {what}: {st.text}",
            detail=detail,
            vxid=s.vxid(),
            qid=st.qid,
        )

    def later(self, fn: Callable[[], None]) -> Proc:
        """A one-shot process: runs `fn` when woken."""
        fn()
        yield from ()

    # ---- attacks ---------------------------------------------------------------------------

    def attack(self, run: AttackRun) -> Proc:
        plan, rng = run.plan, self.attack_rng
        p = plan.principal
        s: Session | None = None
        if plan.uses_analyst is not None:
            yield plan.start_ms
            s = plan.uses_analyst.session  # in her open session, if she has one
        own = s is None
        if s is None:
            yield max(self.log.t, plan.start_ms - rng.randint(5 * SECOND, 50 * SECOND))
            s = self.connect(p.user, p.client_addr, p.application_name, attack=True)
            yield self.log.t + rng.randint(2, 9)
            self.authorized(s)
        t = self.log.t
        for step in plan.steps:
            t = max(self.log.t, plan.start_ms + step.at)
            yield t
            if step.run is not None:
                step.run(self, s)
                run.saw(self.log.t, 0)
            else:
                self.audit(s, step.statement, step.params, step.rows, run)
        last = plan.steps[-1]
        if last.statement.tag == '"SELECT"' and last.rows > 5000:  # over the duration limit
            ms = rng.uniform(300, 3000) * last.rows / 50_000
            t += int(ms)
            yield t
            self.duration(s, last.statement, ms)
        if plan.after is not None:
            t = plan.after(self, s, t)
        if own:
            yield t + rng.randint(500, 20_000)
            self.disconnect(s)


def generate(
    out: Path,
    *,
    seed: int,
    log_rows: bool,
    days: int = 4,
    scale: float = 1.0,
    attacks: Sequence[str] = ATTACKS,
) -> Manifest:
    """Write a scenario csvlog to `out` and its manifest to `out.with_suffix(".json")`.

    Deterministic for a seed. Raises ValueError for an unknown attack or fewer than 3 days (the
    attacks need a learning period and a weekday night after it).
    """
    unknown = set(attacks) - set(ATTACKS)
    if unknown:
        raise ValueError(f"unknown attacks: {sorted(unknown)}")
    if days < 3:
        raise ValueError("a scenario needs at least 3 days")
    world = World(seed, log_rows, days, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    with part.open("w", encoding="utf-8", newline="") as f:
        log = Log(f, log_rows)
        run = Run(world, log, attacks)
        run.run()
    part.replace(out)
    found = []
    for r in run.runs:
        if r.first < 0:
            raise RuntimeError(f"attack {r.plan.name} wrote no audit record")
        half = (
            r.half * 1000
            if r.half is not None and r.plan.name == "stolen_credentials_paging"
            else None
        )
        found.append(
            Attack(
                r.plan.name, r.plan.principal, r.first * 1000, r.last * 1000, half, r.plan.detail
            )
        )
    found.sort(key=lambda a: a.start_us)
    manifest = Manifest(
        path=str(out),
        seed=seed,
        log_rows=log_rows,
        table=WATCHED,
        table_rows=world.rows,
        start_us=world.start_ms * 1000,
        end_us=world.end_ms * 1000,
        records=log.records,
        audit_records=log.audits,
        expected=[{"user": "backup", "application_name": "pg_dump", "note": "nightly backup"}],
        benign=list(run.benign),
        attacks=found,
    )
    out.with_suffix(".json").write_text(manifest.to_json(), encoding="utf-8")
    return manifest
