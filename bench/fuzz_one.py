#!/usr/bin/env python3
"""One atheris (libFuzzer) run of one target of tests/fuzzkit.py; bench/fuzz_bench.py runs these.

    .venv/bin/python bench/fuzz_one.py TARGET [libFuzzer flags] CORPUS_DIR [SEED_DIR]

The project's modules are instrumented for coverage as they are imported; the target's promises
are checked on every input (an AssertionError or any other exception is a finding: libFuzzer
writes the input to `-artifact_prefix` and stops).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import atheris  # type: ignore[import-not-found]  # noqa: E402

PACKAGES = ["collectors", "core", "alerts", "tablewatch", "tui"]


def main() -> None:
    name = sys.argv.pop(1)
    with atheris.instrument_imports(include=PACKAGES):
        from tests import fuzzkit

        check = fuzzkit.target(name)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
