#!/usr/bin/env python3
"""Detection bench: findings replay speed and memory, and the attack scenarios swept over seeds.

    .venv/bin/python bench/detection_bench.py                       # everything, 3 rounds
    .venv/bin/python bench/detection_bench.py --only speed --repeat 5
    .venv/bin/python bench/detection_bench.py --only scenarios --seeds 1-40

Three parts (issue 3, "Benchmark" and "Show it works"):

* ``speed``      ``tablewatch replay`` (findings) against ``tablewatch replay --events`` on the
                 1M-record file of the replay bench (``bench/out/bench-1m.csv``, generated when
                 missing), interleaved, best of ``--repeat``. Target: findings at most 30% slower.
* ``principals`` peak RSS of a findings replay over a file with ``--principals`` (100,000)
                 distinct principals, ten statements each. Target: under 500 MB.
* ``scenarios``  ``tests/scenario/`` worlds for each seed, log_rows off and on, graded by
                 ``tests/detection_check.py``: each attack's time to its required severity, and
                 the benign findings.

The Markdown report goes to stdout and ``bench/out/detection-bench.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from replay_bench import TABLEWATCH, commands, ensure_file, measure, warm  # noqa: E402

from tests.detection_check import REQUIRED, Report, run_scenario  # noqa: E402
from tests.scenario import generate  # noqa: E402

OUT = HERE / "out"
WATCHED = "crm.client_list"


def speed(repeat: int) -> list[str]:
    path = OUT / "bench-1m.csv"
    manifest = ensure_file(path, 1_000_000, None)
    warm(path)
    records = int(manifest["records"])
    tools = {
        "replay --events": commands(path, OUT, "bin")["tablewatch"],  # the replay bench's
        "replay (findings)": [
            str(TABLEWATCH),
            "replay",
            "--format",
            "csvlog",
            "--table",
            f"{WATCHED}=50000",
            str(path),
        ],
    }
    best: dict[str, tuple[float, int | None]] = {}
    for _ in range(repeat):
        for name, cmd in tools.items():
            run = measure(cmd)
            if run.rc != 0:
                raise SystemExit(f"{name} failed ({run.rc}): {run.stderr_tail}")
            if name not in best or run.seconds < best[name][0]:
                best[name] = (run.seconds, run.rss_kib)
    events_s = best["replay --events"][0]
    lines = [
        f"### Findings replay speed: `{path.relative_to(ROOT)}`, {records:,} csvlog records "
        f"({int(manifest['watched_events']):,} events on {WATCHED}), best of {repeat}",
        "",
        "| command | seconds | records/s | peak RSS MiB | time vs --events |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (seconds, rss) in best.items():
        rss_text = f"{rss / 1024:.0f}" if rss else "?"
        lines.append(
            f"| `tablewatch {name}` | {seconds:.2f} | {records / seconds:,.0f} | {rss_text} | "
            f"{seconds / events_s:.2f}x |"
        )
    ratio = best["replay (findings)"][0] / events_s
    slower = 1 - 1 / ratio  # in records/s, the measure
    verdict = "MET" if slower <= 0.30 else "MISSED"
    lines += [
        "",
        f"Findings replay runs at {1 - slower:.0%} of the records/s of --events: {slower:.0%} "
        f"slower (target: at most 30% slower): {verdict}. In time: {ratio:.2f}x (a 30% time "
        f"margin would be 1.30x: {'met' if ratio <= 1.3 else 'missed'}).",
    ]
    lines += ["", "Commands:", ""] + [f"- `{' '.join(_short(c))}`" for c in tools.values()]
    return lines


def _short(cmd: list[str]) -> list[str]:
    return [str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c for c in cmd]


def principals_file(path: Path, principals: int, per_principal: int) -> int:
    """A csvlog file where `principals` distinct principals each run `per_principal` statements."""
    start = datetime(2026, 11, 2, tzinfo=UTC)
    records = principals * per_principal
    step = timedelta(days=1) / records
    lookup = "SELECT id, name, email FROM crm.client_list WHERE id = $1"
    page = "SELECT * FROM crm.client_list WHERE region = 'EU' ORDER BY id LIMIT 100"
    with path.open("w", encoding="utf-8") as out:
        for n in range(records):
            p = n % principals
            user = f"user{p % 997}"
            addr = f"10.{p >> 16 & 255}.{p >> 8 & 255}.{p & 255}"
            app = f"svc-{p % 101}"
            when = start + step * n
            stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"
            statement, param = (page, "<none>") if n % 10 == 0 else (lookup, str(n % 100_000))
            inner = f'AUDIT: OBJECT,{n},1,READ,SELECT,TABLE,{WATCHED},"{statement}",{param}'
            message = inner.replace('"', '""')
            session = f"{0x6B0B9ED0 + p:x}.{p & 0xFFFF:x}"
            out.write(
                f'{stamp},"{user}","crm",{1000 + p % 30000},"{addr}:{40000 + n % 20000}",'
                f'{session},{n},"SELECT",2026-11-02 00:00:00 UTC,3/{n},0,LOG,00000,'
                f'"{message}",,,,,,,,,"{app}","client backend",,0\n'
            )
    return records


def principals_rss(count: int) -> list[str]:
    path = OUT / f"principals-{count // 1000}k.csv"
    per = 10
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        principals_file(path, count, per)
    records = count * per
    cmd = [
        str(TABLEWATCH),
        "replay",
        "--format",
        "csvlog",
        "--table",
        f"{WATCHED}=100000",
        str(path),
    ]
    run = measure(cmd)
    if run.rc != 0:
        raise SystemExit(f"principals replay failed: {run.stderr_tail}")
    rss = (run.rss_kib or 0) / 1024
    verdict = "MET" if run.rss_kib and rss < 500 else "MISSED"
    return [
        f"### {count:,} distinct principals: `{path.relative_to(ROOT)}`, {records:,} records",
        "",
        f"`{' '.join(_short(cmd))}`: {run.seconds:.1f} s, peak RSS {rss:.0f} MiB "
        f"(target < 500 MB): {verdict}",
    ]


def seeds_arg(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def scenarios(seeds: list[int], days: int) -> list[str]:
    folder = OUT / "scenarios"
    folder.mkdir(parents=True, exist_ok=True)
    reports: list[Report] = []
    for seed in seeds:
        for log_rows in (False, True):
            path = folder / f"seed{seed}-{'rows' if log_rows else 'norows'}-{days}d.csv"
            if not path.with_suffix(".json").exists():
                generate(path, seed=seed, log_rows=log_rows, days=days)
            report = run_scenario(path)
            print(report.text(), file=sys.stderr)
            reports.append(report)
    lines = [
        f"### Attack scenarios: {len(seeds)} seeds x log_rows off/on, {days} days each",
        "",
        "Time from each attack's first record to the finding of the required severity "
        "(seconds; median / worst over the runs), and misses:",
        "",
        "| attack | required | allowed | median s | worst s | missed |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, (severity, allowed) in REQUIRED.items():
        latencies: list[float] = []
        missed = 0
        allowances: list[float] = []
        for report in reports:
            for v in report.verdicts:
                if v.attack.name != name:
                    continue
                allowances.append((v.deadline_us - v.attack.start_us) / 1e6)
                if not v.ok:
                    missed += 1
                if v.latency_s is not None:
                    latencies.append(v.latency_s)
        latencies.sort()
        median = latencies[len(latencies) // 2] if latencies else float("nan")
        worst = latencies[-1] if latencies else float("nan")
        allowed_text = (
            f"{allowed / 1e6:.0f}"
            if allowed is not None
            else f"half the table ({min(allowances):.0f}-{max(allowances):.0f})"
        )
        lines.append(
            f"| {name} | {severity.label} | {allowed_text} | {median:.0f} | {worst:.0f} | "
            f"{missed} |"
        )
    crit = sum(len(r.benign_critical) for r in reports)
    warn = [len(r.benign_warnings) for r in reports]
    events = sum(r.events for r in reports)
    ok = sum(1 for r in reports if r.ok)
    lines += [
        "",
        f"Benign traffic over {len(reports)} runs ({events:,} events): {crit} critical, "
        f"{sum(warn)} warnings (at most {max(warn)} in one run). Runs passing every check: "
        f"{ok}/{len(reports)}.",
    ]
    for report in reports:
        for f in report.benign_warnings:
            p = f.principal
            lines.append(
                f"- seed {report.manifest.seed}: warning for {p.user}@{p.client_addr}: "
                f"{f.reasons[0].detail}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", choices=("speed", "principals", "scenarios"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--principals", type=int, default=100_000)
    parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("1-20"))
    parser.add_argument("--days", type=int, default=4)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lines = [
        f"## Detection bench ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"{platform.node()} · {platform.machine()} · Python {platform.python_version()}",
        "",
    ]
    if args.only in (None, "speed"):
        lines += speed(args.repeat) + [""]
    if args.only in (None, "principals"):
        lines += principals_rss(args.principals) + [""]
    if args.only in (None, "scenarios"):
        lines += scenarios(args.seeds, args.days) + [""]
    lines.append(f"(bench took {time.perf_counter() - started:.0f} s)")
    text = "\n".join(lines)
    print(text)
    (OUT / "detection-bench.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
