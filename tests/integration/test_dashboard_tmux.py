"""The dashboard as a person sees it: in tmux, read from the screen, driven by key presses.

1. `tablewatch demo`: within a minute a reader turns critical; the person selects it, presses
   `a`, writes a note, confirms, and sees the page delivered next to the one the rules sent by
   themselves; acknowledges it with `k`; at exit the demo lists what its local sink recorded.
2. `tablewatch dashboard` over a real pgaudit log (a private PostgreSQL 15 + pgaudit cluster)
   whose user names, application_name, statements and parameters carry markup and terminal
   escape sequences: every pane shows them literally, and none of them reaches the terminal.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tablewatch.pgcluster import PgCluster
from tests.integration.screen import Screen

pytestmark = pytest.mark.slow

TABLEWATCH = str(Path(sys.executable).parent / "tablewatch")
CRITICAL_WITHIN = 60.0
"""The demo's promise: a newcomer sees a reader turn critical within a minute."""


def _critical_row(screen: str) -> bool:
    return re.search(r"^│CRIT .*203\.0\.113\.47", screen, re.MULTILINE) is not None


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_demo_turns_critical_and_the_operator_pages(tmp_path: Path, size: tuple[int, int]) -> None:
    with Screen([TABLEWATCH, "demo"], tmp_path, width=size[0], height=size[1]) as screen:
        first = screen.wait(lambda s: "Readers (" in s and "crm-api" in s, 20, "normal readers")
        assert "CRIT" not in first  # normal readers first, the exfiltration later
        screen.wait(_critical_row, CRITICAL_WITHIN, "critical reader")
        screen.keys(*["Up"] * 12)  # the most anomalous reader is the first row
        detail = screen.wait(lambda s: "bulk_read:" in s, 5, "the critical reader's detail")
        assert "203.0.113.47" in detail
        screen.keys("a")
        screen.wait(lambda s: "Page on-call" in s, 5, "the page dialog")
        screen.keys("pulling the whole list", literal=True)
        screen.keys("Enter")
        screen.wait(lambda s: "paged: local sent" in s, 10, "the page delivered")
        screen.keys("f")
        alerts = screen.wait(lambda s: "Alerts (2)" in s, 5, "the alerts list")
        assert re.search(r"CRIT ACTIVE +rule +crm_app@203", alerts)  # the rule paged by itself
        screen.keys("Up")  # the operator's page, newest, is the first row
        screen.wait(lambda s: "pulling the whole list" in s, 5, "the operator's alert")
        screen.keys("k")
        screen.wait(lambda s: "Acknowledge this alert" in s, 5, "the acknowledge dialog")
        screen.keys("on it", literal=True)
        screen.keys("Enter")
        acked = screen.wait(lambda s: "acknowledged: local acked" in s, 10, "the acknowledgement")
        assert re.search(r"CRIT acked \S+ +\S+ +crm_app@203", acked)
        screen.keys("q")
        bye = screen.wait(lambda s: "EXITED" in s, 15, "the demo to exit")
        assert "EXITED 0" in bye
        said = _squeezed(bye)  # the terminal wraps long lines anywhere, spaces and all
        assert _squeezed("3 alert action(s) recorded by the local sink") in said
        who = "critical crm_app@203.0.113.47 (psql) on crm.client_list"
        assert _squeezed(f"trigger {who}, by tablewatch") in said
        assert _squeezed(f"trigger {who}, paged by") in said
        assert _squeezed("pulling the whole list") in said
        assert _squeezed(f"acknowledge {who}, by") in said and ":onit" in said


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --- hostile text from a real pgaudit log ------------------------------------------------------

EVIL_USER = "[bold red]PAGE ME[/]\x1b]52;c;cGF3bmVk\x07"
"""A role name: OSC 52 (clipboard write) and markup. Identifiers may hold any character but NUL."""
EVIL_APP = "psql[@click=app.quit] ack[/]"
"""application_name (PostgreSQL keeps only printable ASCII there): a live action if parsed."""
EVIL_PARAMS = [
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x1bP+q544e\x1b\\",  # DCS
    "\x9b31mC1 CSI",  # C1 control
    "\u202eevil\u2066",  # bidi overrides
    "[/x] [link=http://x]y[/link] [",  # unbalanced and unterminated markup
]
EVIL_STATEMENT = "SELECT * FROM crm.client_list /* \x1b[2J\x1b]0;pwned\x07 [blink]x */"

SETUP = """
CREATE SCHEMA crm;
CREATE TABLE crm.client_list (id int PRIMARY KEY, name text);
INSERT INTO crm.client_list SELECT g, 'client ' || g FROM generate_series(1, 500) g;
GRANT SELECT ON crm.client_list TO auditor;
"""


async def _evil_reads(pg: PgCluster) -> None:
    conn = await asyncpg.connect(
        pg.dsn("postgres", "crm"), server_settings={"application_name": "setup"}
    )
    try:
        role = '"' + EVIL_USER.replace('"', '""') + '"'
        await conn.execute(f"CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA crm TO {role};")
        await conn.execute(f"GRANT SELECT ON crm.client_list TO {role}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(
        host=pg.host,
        port=pg.port,
        user=EVIL_USER,
        database="crm",
        server_settings={"application_name": EVIL_APP},
    )
    try:
        where = " OR ".join(f"name = ${i}" for i in range(1, len(EVIL_PARAMS) + 1))
        await conn.fetch(f"SELECT id FROM crm.client_list WHERE {where}", *EVIL_PARAMS)
        await conn.fetch(EVIL_STATEMENT)
    finally:
        await conn.close()


FORBIDDEN = {
    "OSC 52 clipboard write": b"\x1b]52",
    "OSC 8 hyperlink": b"\x1b]8;",
    "OSC 0 title": b"\x1b]0;",
    "DCS": b"\x1bP",
    "C1 CSI (U+009B)": "\u009b".encode(),
    "bidi override": "\u202e".encode(),
    "bidi isolate": "\u2066".encode(),
    "NUL": b"\x00",
    "screen clear from data": b"\x1b[2J",
}


@pytest.mark.postgres
def test_hostile_text_from_a_real_audit_log_stays_text(pg_factory: object, tmp_path: Path) -> None:
    pg = pg_factory({"log_destination": "csvlog"})
    pg.psql("CREATE DATABASE crm")
    pg.psql(SETUP, dbname="crm", app="setup")
    asyncio.run(_evil_reads(pg))
    pg.wait_for_log("csvlog", lambda text: "pwned" in text)
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f"""
[[tables]]
name = "crm.client_list"
rows = 500

[audit_log]
path = "{pg.log_path("csvlog")}"
format = "csvlog"
start = "beginning"

[state]
dir = "{tmp_path / "state"}"
"""
    )
    command = [TABLEWATCH, "--config", str(settings), "dashboard"]
    with Screen(command, tmp_path, width=100, height=50) as screen:
        seen = [screen.wait(lambda s: "CRIT" in s, 20, "the hostile reader, critical")]
        steps: list[tuple[str, Callable[[str], bool]]] = [
            ("d", lambda s: "psql[@click=app.quit]" in s),
            ("v", lambda s: "SELECT" in s),
            ("r", lambda s: "revealed" in s),
            ("f", lambda s: "Findings (" in s),
            ("d", lambda s: "evil.example" in s),
            ("a", lambda s: "Page on-call" in s),
            # Escape alone: followed at once by a key, the terminal reads it as Alt+key
            ("Escape", lambda s: "Page on-call" not in s),
            ("?", lambda s: "esc, ? or q closes" in s),
            ("Escape", lambda s: "esc, ? or q closes" not in s),
            ("e", lambda s: "Enter or ctrl+s confirms" in s),
            ("Escape", lambda s: "Enter or ctrl+s confirms" not in s),
        ]
        for key, ready in steps:
            screen.keys(key)
            seen.append(screen.wait(ready, 5, f"the screen after {key!r}"))
        screens = "\n".join(seen)
        # literal, visible, harmless
        assert "[bold red]PAGE ME[/]\\x1b]52;c;cGF3bmVk\\x07" in screens
        assert "psql[@click=app.quit]" in screens and " ack[/]" in screens
        assert "\\x1b]8;;http://evil.example/" in screens  # revealed parameters
        assert "\\u202eevil" in screens and "[/x] [link=http://x]y[/link] [" in screens
        screen.keys("q")
        bye = screen.wait(lambda s: "EXITED" in s, 15, "the dashboard to exit")
        assert "EXITED 0" in bye
        raw = screen.output()
    assert b"PAGE ME[/]\\x1b]52;c;" in raw  # the data did reach the terminal: as text
    leaked = {name: seq for name, seq in FORBIDDEN.items() if seq in raw}
    assert not leaked, f"control sequences from the data reached the terminal: {leaked}"
    oscs = set(re.findall(rb"\x1b\](\d+)", raw))
    assert oscs <= {b"22"}, f"unexpected OSC sequences: {oscs}"  # 22: Textual's pointer shape
