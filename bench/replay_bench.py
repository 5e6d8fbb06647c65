#!/usr/bin/env python3
"""Replay throughput bench: tablewatch vs pgbadger vs a bare csv.reader floor, on one csvlog file.

    .venv/bin/python bench/replay_bench.py                 # 1M records, best of 1
    .venv/bin/python bench/replay_bench.py --repeat 3 --profile --verify

Generates ``bench/out/bench-1m.csv`` (``gen_csvlog.py``, seeded) when it is missing, reads it once
to warm the page cache, then measures each tool in a fresh child process, in this order per round:

* ``floor``      ``python -c`` counting rows with ``csv.reader`` (the cheapest way to read csvlog
                 records in Python at all);
* ``tablewatch`` ``.venv/bin/tablewatch replay --events --format csvlog --table crm.client_list
                 FILE > /dev/null``;
* ``pgbadger``   ``/usr/bin/pgbadger -j 1 -f csv -x bin -o TMP/out.bin --quiet FILE`` (one job;
                 the binary output is its cheapest: parse and count, no report;
                 ``--pgbadger-format text`` for the text report).

Wall seconds (best of ``--repeat``), records/s (records = csvlog records in the file, as the floor
counted them), peak RSS (``/usr/bin/time -v``, or ``getrusage(RUSAGE_CHILDREN)`` in a fresh
wrapper process when GNU time is missing). The Markdown table goes to stdout and to
``bench/out/replay-bench.md`` (JSON in ``replay-bench.json``).

Targets (the project issue): tablewatch at least 4x pgbadger's records/s, and at most 2x the floor's
time (speed vs floor >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
VENV_PY = ROOT / ".venv" / "bin" / "python"
TABLEWATCH = ROOT / ".venv" / "bin" / "tablewatch"
PGBADGER = Path("/usr/bin/pgbadger")
GNU_TIME = Path("/usr/bin/time")
WATCHED = "crm.client_list"
TOOLS = ("floor", "tablewatch", "pgbadger")

FLOOR_SRC = """\
import csv, sys
with open(sys.argv[1], encoding="utf-8", newline="") as f:
    n = sum(1 for _ in csv.reader(f))
print(n)
"""

# Runs argv[2:] and writes the child's peak RSS (KiB) to argv[1]: the fallback without GNU time.
RUSAGE_WRAPPER_SRC = """\
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
"""

PROFILE_SRC = """\
import cProfile, sys
out = sys.argv[1]
sys.argv = ["tablewatch", *sys.argv[2:]]
from tablewatch.cli import main
prof = cProfile.Profile()
prof.enable()
try:
    rc = main()
except SystemExit as exc:
    rc = exc.code
finally:
    prof.disable()
    prof.dump_stats(out)
sys.exit(rc if isinstance(rc, int) else 0)
"""


@dataclass
class Run:
    seconds: float
    rss_kib: int | None
    rc: int
    stdout: str = ""
    stderr_tail: str = ""


@dataclass
class ToolResult:
    tool: str
    command: list[str]
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None

    @property
    def best(self) -> Run | None:
        ok = [r for r in self.runs if r.rc == 0]
        return min(ok, key=lambda r: r.seconds) if ok else None

    @property
    def failed(self) -> Run | None:
        bad = [r for r in self.runs if r.rc != 0]
        return bad[0] if bad and self.best is None else None


def measure(cmd: list[str], *, capture_stdout: bool = False) -> Run:
    """Run cmd once in a fresh child; wall time from here, peak RSS from GNU time or rusage."""
    with tempfile.TemporaryDirectory(prefix="twbench-") as tmp:
        rss_file = Path(tmp) / "rss"
        if GNU_TIME.exists():
            full = [str(GNU_TIME), "-v", "-o", str(rss_file), *cmd]
        else:
            full = [sys.executable, "-c", RUSAGE_WRAPPER_SRC, str(rss_file), *cmd]
        err_file = Path(tmp) / "stderr"
        with err_file.open("wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.run(
                full,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                stderr=err,
                check=False,
            )
            seconds = time.perf_counter() - t0
        rss: int | None = None
        if rss_file.exists():
            text = rss_file.read_text(errors="replace")
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
            if m:
                rss = int(m.group(1))
            elif text.strip().isdigit():
                rss = int(text.strip())
        err_lines = [
            ln
            for ln in err_file.read_text(errors="replace").splitlines()
            if ln.strip() and not ln.startswith("Wide character in print")
        ]
        out = proc.stdout.decode(errors="replace") if capture_stdout else ""
        return Run(seconds, rss, proc.returncode, out, "\n".join(err_lines[-5:]))


def ensure_file(path: Path, records: int, seed: int | None) -> dict[str, Any]:
    """Generate (and verify) the file if it or its manifest is missing; return the manifest."""
    manifest = path.with_name(path.name + ".json")
    gen = [sys.executable, str(HERE / "gen_csvlog.py"), "--out", str(path)]
    if seed is not None:
        gen += ["--seed", str(seed)]
    if not path.exists():
        print(f"generating {path} ({records:,} records) ...", file=sys.stderr)
        subprocess.run([*gen, "--records", str(records), "--check"], check=True)
    elif not manifest.exists():
        subprocess.run([*gen, "--check-only"], check=True)
    result: dict[str, Any] = json.loads(manifest.read_text())
    return result


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(1 << 22):
            pass


def commands(path: Path, tmp: Path, pgbadger_format: str) -> dict[str, list[str]]:
    ext = {"bin": "bin", "text": "txt", "json": "json", "html": "html"}[pgbadger_format]
    return {
        "floor": [str(VENV_PY), "-c", FLOOR_SRC, str(path)],
        "tablewatch": [
            str(TABLEWATCH),
            "replay",
            "--events",
            "--format",
            "csvlog",
            "--table",
            WATCHED,
            str(path),
        ],
        "pgbadger": [
            str(PGBADGER),
            "-j",
            "1",
            "-f",
            "csv",
            "-x",
            pgbadger_format,
            "-o",
            str(tmp / f"out.{ext}"),
            "--quiet",
            "--pid-dir",
            str(tmp),
            str(path),
        ],
    }


def skip_reason(tool: str) -> str | None:
    if tool == "tablewatch" and not TABLEWATCH.exists():
        return f"{TABLEWATCH.relative_to(ROOT)} not found (install the project into .venv)"
    if tool == "pgbadger" and not PGBADGER.exists():
        return "pgbadger not installed (apt-get install -y pgbadger)"
    return None


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def table(results: dict[str, ToolResult], records: int) -> tuple[str, dict[str, dict[str, Any]]]:
    rates: dict[str, float] = {}
    for name, res in results.items():
        b = res.best
        if b is not None:
            rates[name] = records / b.seconds
    rows = [
        "| tool | seconds | records/s | peak RSS MiB | speed vs floor | speed vs pgbadger |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    figures: dict[str, dict[str, Any]] = {}
    for name, res in results.items():
        b = res.best
        if res.skipped:
            rows.append(f"| {name} | skipped: {res.skipped} | | | | |")
            continue
        if b is None:
            f = res.failed
            why = (
                f"exit {f.rc}: {f.stderr_tail.splitlines()[-1] if f.stderr_tail else ''}"
                if f
                else ""
            )
            rows.append(f"| {name} | failed ({why.replace('|', '/')}) | | | | |")
            continue
        rate = rates[name]
        vs_floor = f"{rate / rates['floor']:.2f}x" if "floor" in rates else "-"
        vs_pgb = f"{rate / rates['pgbadger']:.2f}x" if "pgbadger" in rates else "-"
        rss = f"{b.rss_kib / 1024:.0f}" if b.rss_kib is not None else "?"
        rows.append(
            f"| {name} | {b.seconds:.2f} | {fmt_rate(rate)} | {rss} | {vs_floor} | {vs_pgb} |"
        )
        figures[name] = {
            "seconds": round(b.seconds, 3),
            "records_per_s": round(rate),
            "peak_rss_mib": round(b.rss_kib / 1024, 1) if b.rss_kib is not None else None,
            "all_seconds": [round(r.seconds, 3) for r in res.runs],
        }
    return "\n".join(rows), figures


def verdicts(figures: dict[str, dict[str, Any]]) -> list[str]:
    out: list[str] = []
    tw = figures.get("tablewatch")
    if tw is None:
        return ["tablewatch not measured: targets not evaluated"]
    if "pgbadger" in figures:
        x = tw["records_per_s"] / figures["pgbadger"]["records_per_s"]
        out.append(
            f"tablewatch is {x:.2f}x pgbadger's records/s (target >= 4x): "
            f"{'MET' if x >= 4 else 'MISSED'}"
        )
    if "floor" in figures:
        x = tw["seconds"] / figures["floor"]["seconds"]
        out.append(
            f"tablewatch takes {x:.2f}x the floor's time (target <= 2x): "
            f"{'MET' if x <= 2 else 'MISSED'}"
        )
    return out


def verify_events(cmd: list[str], expected: int | None) -> str:
    """Untimed: count tablewatch's JSON lines and check the first one's keys."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    n = 0
    first: dict[str, Any] | None = None
    for line in proc.stdout:
        if n == 0:
            first = json.loads(line)
        n += 1
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    rc = proc.wait()
    keys = {
        "time", "user", "database", "client_addr", "application_name", "session_id",
        "audit_type", "statement_id", "substatement_id", "class", "command", "object_type",
        "object_name", "statement", "parameters", "rows",
    }  # fmt: skip
    notes = [f"exit {rc}", f"{n:,} events (manifest: {expected:,})" if expected else f"{n:,}"]
    if expected is not None and n != expected:
        notes.append("COUNT MISMATCH")
    if first is not None and set(first) != keys:
        notes.append(f"keys differ: {sorted(set(first) ^ keys)}")
    if err.strip():
        notes.append("stderr: " + err.strip().splitlines()[-1][:200])
    return "; ".join(notes)


def profile(cmd_args: list[str], out: Path, top: int) -> str:
    """Run tablewatch under cProfile (in a child); return self time by file and the top functions.

    cProfile adds overhead per Python call, so shares are indicative; the full report (by tottime
    and by cumulative time) goes to bench/out/replay-profile.txt.
    """
    prof_file = out / "replay.prof"
    prof_file.unlink(missing_ok=True)
    subprocess.run(
        [str(VENV_PY), "-c", PROFILE_SRC, str(prof_file), *cmd_args],
        stdout=subprocess.DEVNULL,
        check=False,
        cwd=ROOT,
    )
    if not prof_file.exists():
        return "profile: no data (tablewatch failed under cProfile)"
    with (out / "replay-profile.txt").open("w") as f:
        st = pstats.Stats(str(prof_file), stream=f)
        st.sort_stats("tottime").print_stats(top)
        st.sort_stats("cumulative").print_stats(top)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = st.stats  # type: ignore[attr-defined]
    by_file: dict[str, float] = {}
    funcs: list[tuple[float, float, int, str]] = []
    total = 0.0
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        total += tottime
        where = "(C builtins)" if filename == "~" else short_path(filename)
        by_file[where] = by_file.get(where, 0.0) + tottime
        name = func if filename == "~" else f"{short_path(filename)}:{line}({func})"
        funcs.append((tottime, cumtime, ncalls, name))
    lines = [f"total self time {total:.1f} s under cProfile", "", "self time by file:"]
    for where, t in sorted(by_file.items(), key=lambda kv: -kv[1])[:10]:
        lines.append(f"  {100 * t / total:5.1f}%  {t:6.2f} s  {where}")
    lines += ["", "top functions by self time:", "   self s   cum s      calls  function"]
    for tottime, cumtime, ncalls, name in sorted(funcs, reverse=True)[:top]:
        lines.append(f"  {tottime:7.2f} {cumtime:7.2f} {ncalls:10d}  {name}")
    return "\n".join(lines)


def short_path(filename: str) -> str:
    """Project files relative to the root; others as package/file (site-packages, stdlib)."""
    p = Path(filename)
    try:
        return str(p.resolve().relative_to(ROOT)) if ".venv" not in p.parts else lib_path(p)
    except ValueError:
        return lib_path(p)


def lib_path(p: Path) -> str:
    parts = p.parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    return "/".join(parts[-2:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--file", type=Path, help="bench this csvlog file instead of bench/out/...")
    ap.add_argument("--seed", type=int, default=None, help="generator seed (default: its own)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; best of N is reported")
    ap.add_argument(
        "--tools", default=",".join(TOOLS), help="comma list of floor,tablewatch,pgbadger"
    )
    ap.add_argument("--pgbadger-format", default="bin", choices=["bin", "text", "json", "html"])
    ap.add_argument("--verify", action="store_true", help="also check tablewatch's event count")
    ap.add_argument("--profile", action="store_true", help="also cProfile tablewatch (slower)")
    ap.add_argument("--profile-top", type=int, default=15)
    args = ap.parse_args(argv)

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        ap.error(f"unknown tools: {', '.join(sorted(unknown))}")
    OUT.mkdir(parents=True, exist_ok=True)
    if args.file:
        path = args.file.resolve()
        if not path.is_file():
            print(f"no such file: {path}", file=sys.stderr)
            return 2
        mpath = path.with_name(path.name + ".json")
        manifest = json.loads(mpath.read_text()) if mpath.exists() else {}
    else:
        tag = "1m" if args.records == 1_000_000 else str(args.records)
        path = OUT / f"bench-{tag}.csv"
        manifest = ensure_file(path, args.records, args.seed)

    warm(path)
    size = path.stat().st_size
    results = {t: ToolResult(t, []) for t in tools}
    with tempfile.TemporaryDirectory(prefix="twbench-") as tmpdir:
        cmds = commands(path, Path(tmpdir), args.pgbadger_format)
        for t in tools:
            results[t].command = cmds[t]
            results[t].skipped = skip_reason(t)
            if results[t].skipped:
                print(f"note: skipping {t}: {results[t].skipped}", file=sys.stderr)
        for rnd in range(args.repeat):
            for t in tools:
                if results[t].skipped:
                    continue
                print(f"round {rnd + 1}/{args.repeat}: {t} ...", file=sys.stderr, flush=True)
                run = measure(cmds[t], capture_stdout=(t == "floor"))
                results[t].runs.append(run)
                extra = f" exit {run.rc}: {run.stderr_tail}" if run.rc else ""
                print(f"  {run.seconds:.2f} s{extra}", file=sys.stderr, flush=True)

    # Records in the file: what the floor counted, else the manifest.
    records = int(manifest.get("records", 0))
    floor = results.get("floor")
    if floor and floor.best is not None and floor.best.stdout.strip().isdigit():
        counted = int(floor.best.stdout.strip())
        if records and counted != records:
            print(f"warning: floor counted {counted:,}, manifest says {records:,}", file=sys.stderr)
        records = counted
    if not records:
        print("cannot tell how many records the file holds (run the floor)", file=sys.stderr)
        return 2

    md_table, figures = table(results, records)
    checks = verdicts(figures)
    env = (
        f"{platform.node()} · {os.cpu_count()} CPU · {cpu_model()} · Python "
        f"{platform.python_version()} · pgbadger {pgbadger_version()}"
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Replay bench ({when})",
        "",
        f"File: `{display(path)}`: {records:,} csvlog records, {size / 2**20:.1f} MiB"
        + (
            f", {manifest['audit_records']:,} pgaudit records, "
            f"{manifest['watched_events']:,} on {WATCHED}"
            if "watched_events" in manifest
            else ""
        )
        + f". Best of {args.repeat}; page cache warm. {env}.",
        "",
        md_table,
        "",
        *[f"- {c}" for c in checks],
        "",
        "Commands:",
        "",
        *[
            f"- {t}: `{' '.join(display_arg(a) for a in results[t].command)}`"
            for t in tools
            if results[t].command
        ],
    ]
    if args.verify and "tablewatch" in figures:
        v = verify_events(results["tablewatch"].command, manifest.get("watched_events"))
        lines += ["", f"Verify (untimed): {v}"]
    if args.profile and "tablewatch" in figures:
        report = profile(results["tablewatch"].command[1:], OUT, args.profile_top)
        lines += ["", "Profile of tablewatch (cProfile; full: bench/out/replay-profile.txt):", ""]
        lines += ["```", report, "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "replay-bench.md").write_text(text)
    (OUT / "replay-bench.json").write_text(
        json.dumps(
            {
                "when": when,
                "file": str(path),
                "bytes": size,
                "records": records,
                "repeat": args.repeat,
                "figures": figures,
                "verdicts": checks,
                "runs": {t: [asdict(r) for r in res.runs] for t, res in results.items()},
            },
            indent=2,
        )
        + "\n"
    )
    return 0


def display(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def display_arg(a: str) -> str:
    if "\n" in a:
        return "<floor script: sum(1 for _ in csv.reader(f))>"
    return display(Path(a)) if a.startswith(str(ROOT)) else a


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def pgbadger_version() -> str:
    if not shutil.which(str(PGBADGER)):
        return "absent"
    out = subprocess.run(
        [str(PGBADGER), "--version"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"version ([\d.]+)", out)
    return m.group(1) if m else "?"


if __name__ == "__main__":
    raise SystemExit(main())
