"""The pieces every sink's payload is made of: clipping, keys, the document, fitting a limit."""

from __future__ import annotations

import json

import pytest

from alerts.render import (
    LEVELS,
    MAX_DOCUMENT,
    Bounds,
    bounded_key,
    clip,
    details,
    encode,
    fit,
    render_document,
)
from core.sinks import Action
from tests.alertkit import HOSTILE, make_alert, make_step


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "ab…"),
        ("abcd", 1, "…"),
        ("abcd", 0, ""),
        ("a\udcff", 5, "a?"),  # a lone surrogate cannot be encoded: replaced
        ("\U0001f600" * 3, 2, "\U0001f600…"),  # code points, never half a character
    ],
)
def test_clip(text: str, limit: int, expected: str) -> None:
    assert clip(text, limit) == expected


def test_bounded_key_is_stable_unique_and_short() -> None:
    base = "critical|" + "u" * 400
    one, two = bounded_key(base + "|a", 255), bounded_key(base + "|b", 255)
    assert len(one) == len(two) == 255 and one != two
    assert one == bounded_key(base + "|a", 255)
    assert bounded_key("short", 255) == "short"


def test_encoding_is_ascii_json_whatever_the_names_hold() -> None:
    payload = encode(details(make_alert(user=HOSTILE, application_name=HOSTILE)))
    assert payload.isascii()
    parsed = json.loads(payload.decode("utf-8"))
    assert (
        parsed["user"].startswith("<!channel>") and "\x1b" in parsed["user"]
    )  # raw, escaped in JSON
    assert "\udcff" not in parsed["user"]
    assert b"\\u001b" in payload and b"\\u202e" in payload


def test_document_shape_and_bounds() -> None:
    alert = make_alert(statement="SELECT 1, " * 300_000, user="u" * 5000, note="n" * 5000)
    doc = json.loads(render_document(alert, make_step(Action.ACKNOWLEDGE, "bob", "looking")))
    assert set(doc) == {"version", "action", "key", "alert", "step"}
    assert doc["version"] == 1 and doc["action"] == "acknowledge" and doc["key"] == alert.key
    assert doc["step"] == {
        "action": "acknowledge",
        "time": "2025-11-29T03:41:40.000Z",
        "actor": "bob",
        "note": "looking",
    }
    assert doc["alert"]["started"] == "2025-11-29T03:41:04.994Z"
    assert len(doc["alert"]["statement"]) == LEVELS[0].statement
    assert (
        len(doc["alert"]["user"]) == LEVELS[0].name and len(doc["alert"]["note"]) == LEVELS[0].text
    )
    assert (doc["alert"]["findings"], doc["alert"]["suppressed"]) == (2, 1)


def test_document_fits_its_limit_with_every_field_at_the_worst() -> None:
    astral = "\U0001f600" * 20_000
    alert = make_alert(key=astral, user=astral, summary=astral, statement=astral, note=astral)
    assert len(render_document(alert, make_step(note=astral))) <= MAX_DOCUMENT


def test_fit_takes_the_first_level_that_fits_and_refuses_when_none_does() -> None:
    tried: list[Bounds] = []

    def build(bounds: Bounds) -> int:
        tried.append(bounds)
        return bounds.statement

    assert fit(build, lambda size: size, 2_000) == 2_000
    assert tried == list(LEVELS[:2])
    with pytest.raises(ValueError, match="exceeds"):
        fit(build, lambda size: size, 10)
