"""Attacker-controlled text: markup, terminal escapes, controls, and sizes nobody should lay out."""

from __future__ import annotations

import re

from rich.text import Text

from tui.text import OWN_STYLES

MARKUP = "[bold red]PAGE ME[/]"
CLICK = "psql[@click=app.quit] ack[/]"
LINK = "[link=http://x]y[/link]"
CLEAR = "\x1b[2J"
OSC52 = "\x1b]52;c;aGVsbG8=\x07"
OSC8 = "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
DCS = "\x1bP1$qm\x1b\\"
CSI_C1 = "\x9b31m"
BIDI = "\u202eevil\u202c"

FRAGMENTS = (
    MARKUP,
    CLICK,
    LINK,
    "[/x]",
    "[",
    "[/]",
    "[b]",
    "[@click=app.bell]",
    ":smile:",
    CLEAR,
    OSC52,
    OSC8,
    DCS,
    CSI_C1,
    "\x00",
    "\x07",
    "\x08",
    "\r",
    "\t",
    "\n",
    "\x7f",
    "\x85",
    BIDI,
    "\u2066\u2069",
    "\u200b\u200d",
    "\ufeff",
    "\u061c",
    "\u2028",
    "名前",
    "e\u0301",
    "%s{0}\\",
)

UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
"""What must never reach the screen (newlines between our own lines excepted)."""


def assert_inert(text: Text) -> None:
    """Only our styles, and nothing in the plain text a terminal would act on."""
    assert isinstance(text, Text)
    assert isinstance(text.style, str) and text.style in OWN_STYLES, text.style
    for span in text.spans:
        assert isinstance(span.style, str) and span.style in OWN_STYLES, span.style
    found = UNSAFE.search(text.plain)
    assert found is None, f"{found.group()!r} in {text.plain!r}"
