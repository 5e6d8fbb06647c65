#!/usr/bin/env python3
"""Fuzz bench: every parser of untrusted input under atheris (coverage-guided libFuzzer).

    .venv/bin/python bench/fuzz_bench.py [--cpu-minutes 30] [--jobs 2] [--targets csvlog,api]

For each target of tests/fuzzkit.py (csvlog, jsonlog, stderr, pgaudit, settings, api) a child
process (bench/fuzz_one.py) fuzzes until it has used `--cpu-minutes` of CPU (its own user and
system time, read from /proc: a busy machine stretches the wall time, not the work), then is
asked to stop (SIGUSR1: libFuzzer's graceful exit, which prints its final figures). `--jobs`
targets run at once. Inputs start from the target's seeds (real-shaped records built from the
shared pgaudit corpus, settings files, API bodies) and the corpus of earlier runs
(bench/out/fuzz/TARGET/corpus, kept between runs), with a dictionary of the tokens these parsers
care about (bench/fuzz.dict). An input taking over `--timeout` seconds is a hang, over 2 GB a
memory blow-up: libFuzzer reports both as findings, like a crash or a broken promise, and writes
the input to bench/out/fuzz/TARGET/ (reproduce: `fuzz_one.py TARGET FILE`).

Prints and writes bench/results/fuzz-<date>.md: per target the CPU minutes, inputs run, inputs/s,
coverage (edges, features), corpus, the slowest input, peak RSS and the findings. Needs atheris
(`scripts/bootstrap.sh bench`). Exit 1 on any finding.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

from bench.replay_bench import cpu_model  # noqa: E402
from tests import fuzzkit  # noqa: E402

OUT = HERE / "out" / "fuzz"
MAX_LEN = {"csvlog": 16_384, "jsonlog": 16_384, "stderr": 16_384}
"""Longest input per target (libFuzzer's -max_len); 4,096 bytes for the others."""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One target's fuzzing child and what it reported."""

    target: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    wall: float = 0.0
    cpu: float = 0.0
    stats: dict[str, str] = field(default_factory=dict)
    cov: str = "?"
    ft: str = "?"
    corpus: str = "?"
    findings: list[str] = field(default_factory=list)
    returncode: int | None = None


def cpu_seconds(pid: int) -> float:
    """User + system time of a live process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the name: state is field 3; utime 14, stime 15, cutime 16, cstime 17 (1-based)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def start(run: Run, args: argparse.Namespace) -> None:
    base = OUT / run.target
    corpus, seeds, found = base / "corpus", base / "seeds", base / "findings"
    for d in (corpus, found):
        d.mkdir(parents=True, exist_ok=True)
    if seeds.exists():
        shutil.rmtree(seeds)
    seeds.mkdir(parents=True)
    for i, seed in enumerate(fuzzkit.seeds(run.target)):
        (seeds / f"seed-{i:03d}").write_bytes(seed)
    command = [
        sys.executable,
        str(HERE / "fuzz_one.py"),
        run.target,
        f"-max_total_time={int(args.cpu_minutes * 60 * 4)}",  # a backstop: stopped by CPU time
        f"-timeout={args.timeout}",
        "-rss_limit_mb=2048",
        f"-max_len={MAX_LEN.get(run.target, 4096)}",
        f"-dict={HERE / 'fuzz.dict'}",
        "-print_final_stats=1",
        "-report_slow_units=2",
        f"-artifact_prefix={found}/",
        str(corpus),
        str(seeds),
    ]
    run.log.parent.mkdir(parents=True, exist_ok=True)
    with run.log.open("wb") as log:
        run.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    run.started = time.monotonic()


def reap(run: Run, *, block: bool) -> bool:
    """Collect the child if it has ended (with `block`, wait for it): its exit and CPU time."""
    assert run.proc is not None
    pid, status, usage = os.wait4(run.proc.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return False
    run.returncode = os.waitstatus_to_exitcode(status)
    run.proc.returncode = run.returncode  # reaped here: Popen must not wait for it again
    run.cpu = usage.ru_utime + usage.ru_stime
    run.wall = time.monotonic() - run.started
    return True


def finish(run: Run) -> None:
    text = run.log.read_text("utf-8", "replace")
    for key, value in re.findall(r"^stat::(\w+):\s+(\S+)", text, re.M):
        run.stats[key] = value
    pulses = re.findall(r"cov: (\d+) ft: (\d+) corp: (\S+)", text)
    if pulses:
        run.cov, run.ft, run.corpus = pulses[-1]
    for marker in (
        "Uncaught Python exception",
        "ERROR: libFuzzer: timeout",
        "ERROR: libFuzzer: out-of-memory",
        "ERROR: libFuzzer: deadly signal",
    ):
        if marker in text:
            run.findings.append(marker)
    written = re.findall(r"Test unit written to (\S+)", text)
    run.findings += [f"input: {Path(w).relative_to(ROOT)}" for w in written]
    if run.returncode not in (0,) and not run.findings:
        run.findings.append(f"exit {run.returncode}: see {run.log.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(fuzzkit.TARGETS))
    parser.add_argument("--cpu-minutes", type=float, default=30.0, help="per target")
    parser.add_argument("--jobs", type=int, default=2, help="targets fuzzed at once")
    parser.add_argument("--timeout", type=int, default=10, help="seconds: an input over is a hang")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    try:
        atheris_version = version("atheris")
    except PackageNotFoundError:
        print(
            "fuzz_bench: atheris is not installed: run scripts/bootstrap.sh bench", file=sys.stderr
        )
        return 2
    names = [n for n in args.targets.split(",") if n]
    for name in names:
        if name not in fuzzkit.TARGETS:
            parser.error(f"unknown target {name!r}, expected some of {', '.join(fuzzkit.TARGETS)}")

    stamp = datetime.now(UTC)
    waiting = [Run(n, OUT / n / f"run-{stamp:%Y%m%dT%H%M%S}.log") for n in names]
    running: list[Run] = []
    done: list[Run] = []
    limit = args.cpu_minutes * 60
    try:
        while waiting or running:
            while waiting and len(running) < args.jobs:
                run = waiting.pop(0)
                start(run, args)
                running.append(run)
                print(f"{run.target}: started, log {run.log.relative_to(ROOT)}", flush=True)
            time.sleep(2)
            for run in list(running):
                assert run.proc is not None
                if not reap(run, block=False):
                    if cpu_seconds(run.proc.pid) < limit:
                        continue
                    run.proc.send_signal(signal.SIGUSR1)  # libFuzzer: stop, print the figures
                    deadline = time.monotonic() + 60
                    while not reap(run, block=False):
                        if time.monotonic() > deadline:
                            run.proc.kill()
                        time.sleep(0.2)
                finish(run)
                running.remove(run)
                done.append(run)
                print(
                    f"{run.target}: {run.cpu / 60:.1f} CPU-min, "
                    f"{int(run.stats.get('number_of_executed_units', 0)):,} inputs, "
                    f"findings: {run.findings or 'none'}",
                    flush=True,
                )
    except KeyboardInterrupt:
        for run in running:
            if run.proc is not None:
                run.proc.send_signal(signal.SIGUSR1)
        for run in running:
            reap(run, block=True)
            finish(run)
            done.append(run)

    lines = [
        f"# Fuzz bench, {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {cpu_model()}, {len(os.sched_getaffinity(0))} CPU; Python "
        f"{platform.python_version()}, atheris {atheris_version} (libFuzzer)",
        f"Command: .venv/bin/python bench/fuzz_bench.py --cpu-minutes {args.cpu_minutes:g} "
        f"--jobs {args.jobs} --targets {','.join(names)}",
        f"Per input: over {args.timeout} s is a hang, over 2,048 MB an out-of-memory; "
        "both are findings.",
        "",
        "| target | CPU min | wall min | inputs | inputs/s | edges | features | corpus "
        "(inputs/bytes) | slowest input s | peak RSS MB | findings |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    failed = False
    for run in sorted(done, key=lambda r: names.index(r.target)):
        s = run.stats
        executed = int(s.get("number_of_executed_units", 0))
        findings = "; ".join(run.findings) or "none"
        failed |= bool(run.findings)
        lines.append(
            f"| {run.target} | {run.cpu / 60:.1f} | {run.wall / 60:.1f} | {executed:,} | "
            f"{executed / run.cpu if run.cpu else 0:,.0f} | {run.cov} | {run.ft} | {run.corpus} | "
            f"{s.get('slowest_unit_time_sec', '?')} | {s.get('peak_rss_mb', '?')} | {findings} |"
        )
    lines += [
        "",
        f"Result: {'FINDINGS (see above)' if failed else 'no crash, no hang, no broken promise'}.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    part = "" if names == list(fuzzkit.TARGETS) else "-" + "-".join(names)
    path = args.out / f"fuzz-{stamp:%Y-%m-%d}{part}.md"
    path.write_text(report)
    print(f"written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
