"""Findings for a human reader (the demo, until the dashboard lands): one block per finding."""

from __future__ import annotations

import json
import shutil
import textwrap
from typing import TextIO

from core.safetext import ELLIPSIS, safe


def print_findings(json_lines: bytes, out: TextIO, width: int | None = None) -> int:
    """Print `replay` findings (JSON lines) readably, all their text made safe, reasons wrapped
    to the terminal's width; returns how many."""
    width = width or max(60, min(120, shutil.get_terminal_size((100, 24)).columns))
    count = 0
    for line in json_lines.splitlines():
        finding = json.loads(line)
        count += 1
        who = (
            f"{safe(finding['user'], 32)}@{safe(finding['client_addr'] or '?', 40)} "
            f"{safe(finding['application_name'] or '-', 40)}"
        )
        room = width - 1 - 24  # after "HH:MM:SS  SEVERITY SCO  "
        if len(who) > room:
            who = who[: room - 1] + ELLIPSIS
        print(
            f"{finding['time'][11:19]}  {finding['severity'].upper():<8} {finding['score']:>3}  "
            f"{who}",
            file=out,
        )
        for reason in finding["reasons"]:
            text = f"{safe(reason['code'], 40)}: {safe(reason['detail'], 300)}"
            lines = textwrap.wrap(
                text, width - 1, initial_indent=" " * 14, subsequent_indent=" " * 16
            )
            print("\n".join(lines), file=out)
    return count
