#!/usr/bin/env python3
"""Tail model bench: the stateful model of tests/unit/test_tail_model.py, many more examples.

    .venv/bin/python bench/tail_model_bench.py --examples 5000 [--steps 50] [--seed 1]

Runs `TailModel` (random Write / Rotate / Copytruncate / Truncate / Delete / Restart / Kill / Read
histories against `LogTail`) for `--examples` examples of up to `--steps` steps, seeded, without
the example database. Prints and writes bench/results/tail-model-<date>.md: examples, steps, rules
fired, records written / delivered / re-delivered after kills, records the model marked as
possibly gone and how many were, the tails' own lost_bytes, and the time. A failure is shown
shrunk (hypothesis) and the script exits 1.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from tests.unit.test_tail_model import STATS, TailModel  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=50, help="most steps per example")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    config = settings(
        max_examples=args.examples,
        stateful_step_count=args.steps,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    # what @seed(...) does to a test: the same examples for the same seed
    TailModel._hypothesis_internal_use_seed = args.seed
    started = time.monotonic()
    failure = ""
    try:
        run_state_machine_as_test(TailModel, settings=config)
    except BaseException as exc:  # report, do not hide: the shrunk history is in the traceback
        if isinstance(exc, KeyboardInterrupt):
            failure = "interrupted"
        else:
            failure = "".join(traceback.format_exception(exc))
    elapsed = time.monotonic() - started

    now = datetime.now(UTC)
    rules = ", ".join(f"{name} {count:,}" for name, count in sorted(STATS.rules.items()))
    lines = [
        f"# Tail model bench, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {_cpus()} CPU, Python {platform.python_version()}, "
        f"hypothesis {version('hypothesis')}",
        f"Command: .venv/bin/python bench/tail_model_bench.py --examples {args.examples} "
        f"--steps {args.steps} --seed {args.seed}",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| machines run (the {args.examples:,} examples and those hypothesis discarded) "
        f"| {STATS.examples:,} |",
        f"| steps (rules fired) | {STATS.steps:,} |",
        f"| records written | {STATS.written:,} |",
        f"| records delivered | {STATS.delivered:,} |",
        f"| of which re-delivered after a Kill | {STATS.redelivered:,} |",
        f"| runs allowed Truncate/Delete (others: exact match) | {STATS.lossy_runs:,} |",
        f"| records marked possibly gone by the model | {STATS.unreadable:,} |",
        f"| of which never delivered (lost) | {STATS.missing:,} |",
        f"| lost_bytes counted by the tails | {STATS.lost_bytes:,} |",
        f"| time | {elapsed:,.0f} s |",
        "",
        f"Rules fired: {rules}.",
        "",
        f"Result: {'FAILED' if failure else 'passed: no invariant broken'}.",
    ]
    if failure:
        lines += ["", "```", failure.rstrip(), "```"]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"tail-model-{now:%Y-%m-%d}.md"
    path.write_text(report)
    print(f"written to {path}")
    return 1 if failure else 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
