"""Attacker-controlled text (user names, application_name, statements) made safe to print."""

from __future__ import annotations

import unicodedata

import pytest

from core.safetext import ELLIPSIS, safe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reader", "reader"),
        ("Zoë 🙂", "Zoë 🙂"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("csi\x9b31m", "csi\\x9b31m"),
        ("bell\x07nul\x00del\x7f", "bell\\x07nul\\x00del\\x7f"),
        ("a\nb\tc\rd", "a\\nb\\tc\\x0dd"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
    ],
    ids=["plain", "unicode", "ansi", "c1-csi", "c0", "whitespace", "bidi", "zero-width", "isolate"],
)
def test_control_characters_are_escaped(text: str, expected: str) -> None:
    assert safe(text) == expected


def test_keep_newlines_still_escapes_the_rest() -> None:
    assert safe("SELECT 1\n\x1b[31mFROM t", keep_newlines=True) == "SELECT 1\n\\x1b[31mFROM t"


@pytest.mark.parametrize(("limit", "expected"), [(10, "abcdefghij"), (5, "abcd" + ELLIPSIS)])
def test_length_is_bounded_with_a_visible_mark(limit: int, expected: str) -> None:
    assert safe("abcdefghij", limit) == expected


def test_escapes_count_towards_the_bound() -> None:
    assert len(safe("\x1b" * 100, 20)) == 20


def test_no_format_character_survives() -> None:
    """Every Unicode format character (Cf) comes out escaped: tag characters after `pg_dump`
    would otherwise make another application_name look exactly like it."""
    formats = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]
    assert len(formats) > 150
    shown = safe("".join(formats), 100_000)
    assert not [c for c in shown if unicodedata.category(c) == "Cf"]
    assert safe("pg_dump\U000e0041") == "pg_dump\\U000e0041"


@pytest.mark.parametrize("invisible", ["\u3164", "\u115f", "\uffa0", "\u034f", "\ufe0f", "\u2028"])
def test_invisible_look_alikes_are_escaped(invisible: str) -> None:
    assert safe(f"backup{invisible}") == f"backup\\u{ord(invisible):04x}"
