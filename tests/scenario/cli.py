"""The command line: ``python -m tests.scenario OUT.csv [--seed N] [--log-rows] [--days D]
[--scale S]`` writes a scenario and prints what it holds."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.scenario.run import generate


def _utc(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%a %Y-%m-%d %H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    """Write the scenario `argv` asks for and print a summary; returns the exit status."""
    from tests import scenario  # its docstring describes the command (a cycle at import time)

    doc = scenario.__doc__
    ap = argparse.ArgumentParser(
        prog="python -m tests.scenario", description=doc.split("\n\n")[0] if doc else None
    )
    ap.add_argument("out", type=Path, help="the csvlog file to write (manifest: OUT.json)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-rows", action="store_true", help="pgaudit.log_rows = on")
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies all benign rates")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    m = generate(args.out, seed=args.seed, log_rows=args.log_rows, days=args.days, scale=args.scale)
    took = time.perf_counter() - t0
    size = args.out.stat().st_size
    print(
        f"wrote {m.records:,} records ({m.audit_records:,} audit), {size / 2**20:.1f} MiB to "
        f"{args.out} in {took:.1f} s; manifest {args.out.with_suffix('.json')}"
    )
    print(
        f"{_utc(m.start_us)} .. {_utc(m.end_us)} UTC; {m.table} {m.table_rows:,} rows; "
        f"{len(m.benign)} benign principals; log_rows={'on' if m.log_rows else 'off'}"
    )
    for a in m.attacks:
        p = a.principal
        print(f"  {_utc(a.start_us)} {a.name:<26} {p.user}@{p.client_addr} [{p.application_name}]")
        print(f"      {a.detail}")
    return 0
