"""``python -m tests.scenario OUT.csv [--seed N] [--log-rows] [--days D] [--scale S]``."""

from __future__ import annotations

import sys

from tests.scenario.cli import main

if __name__ == "__main__":
    sys.exit(main())
