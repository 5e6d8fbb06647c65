"""Statements lose their constants before they reach a screen or a page."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.redact import redact


@pytest.mark.parametrize(
    ("statement", "shown"),
    [
        ("SELECT * FROM crm.client_list", "SELECT * FROM crm.client_list"),
        (
            "SELECT name FROM crm.client_list WHERE email = 'ann@example.com'",
            "SELECT name FROM crm.client_list WHERE email = '?'",
        ),
        ("SELECT * FROM t WHERE id IN (1, 2, 3.5e2)", "SELECT * FROM t WHERE id IN (?, ?, ?)"),
        ("SELECT * FROM t WHERE id = $1 LIMIT 10", "SELECT * FROM t WHERE id = $1 LIMIT ?"),
        ("SELECT $$secret 'x'$$, $q$more$q$", "SELECT '?', '?'"),
        ("SELECT E'a\\'b', x'ff', b'01', U&'d\\0061t'", "SELECT '?', '?', '?', '?'"),
        ("SELECT 'it''s', \"Quoted\" FROM t -- ann", "SELECT '?', \"Quoted\" FROM t /*…*/"),
        ("SELECT 'é' /* ann é */, 'ü'", "SELECT '?' /*…*/, '?'"),
        ("SELECT 'unterminated", "SELECT '?'"),
        ("SELECT 'a' \x00 'b' 42", "SELECT '?' \x00 '?' ?"),
    ],
)
def test_constants_and_comments_are_masked(statement: str, shown: str) -> None:
    assert redact(statement) == shown


@given(st.text(alphabet=st.characters(blacklist_characters="'\x00"), min_size=3))
def test_no_string_literal_survives(secret: str) -> None:
    quoted = "'" + secret + "'"
    shown = redact(f"SELECT * FROM crm.client_list WHERE note = {quoted} AND id = 7")
    assert quoted not in shown
    assert shown.startswith("SELECT * FROM crm.client_list WHERE note = ")


def test_a_huge_statement_is_cut_before_scanning() -> None:
    shown = redact("SELECT '" + "x" * 3_000_000 + "'")
    assert len(shown) < 2_000_000 and "xxx" not in shown


# A statement as tablewatch.live keeps it: cut at 4,096 characters, often inside a literal, which
# PostgreSQL's scanner then refuses; what is masked then must still hold no customer data.
SHAPE = "SELECT id, email FROM crm.client_list WHERE "
SECRET = "ann@example.com"


def cut(statement: str, at: int = 4096) -> str:
    padded = statement + " filler" * (at // 7 + 1)
    return padded[: at - 1] + "…"


@pytest.mark.parametrize(
    "statement",
    [
        # E'...': \' does not end it
        pytest.param(cut(f"{SHAPE}email = E'it\\'s {SECRET} and {SECRET}"), id="E-string"),
        pytest.param(cut(f"{SHAPE}note = e'\\\\\\'{SECRET}"), id="E-string-backslashes"),
        # any '...' holding \' may be an escape string (standard_conforming_strings = off)
        pytest.param(cut(f"{SHAPE}path = 'C:\\' OR email = '{SECRET}' AND n = 'x"), id="C:\\"),
        pytest.param(cut(f"{SHAPE}note = 'it\\'s {SECRET}' AND id = 'y"), id="string-\\'"),
        # dollar quotes close on their own tag only
        pytest.param(
            cut(f"{SHAPE}note = $body$ {SECRET} $x$ still {SECRET} $$ and {SECRET}"),
            id="dollar-tags",
        ),
        pytest.param(cut(f"{SHAPE}note = $$ {SECRET} $x$ {SECRET}"), id="dollar-empty-tag"),
        # an unterminated comment, nested comments
        pytest.param(cut(f"{SHAPE}id = 7 /* asked for by {SECRET}"), id="comment"),
        pytest.param(
            cut(f"{SHAPE}id = 7 /* a /* nested */ comment on {SECRET} */ AND note = 'x"),
            id="nested-comment",
        ),
        # an unterminated quoted identifier: what follows could be anything
        pytest.param(cut(f'{SHAPE}"Notes" = \'x\' AND "weird {SECRET}'), id="identifier"),
        # a refused text still masks its line comments and plain strings
        pytest.param(
            cut(f"{SHAPE}id = 7 -- for {SECRET}\nAND note = '{SECRET}' AND x = 'cut"),
            id="line-comment",
        ),
        # trailing junk after a number (refused by the scanner): the digits are masked too
        pytest.param(f"{SHAPE}card = 4111111111111111x AND n = '{SECRET}'", id="number-junk"),
    ],
)
def test_a_statement_the_scanner_refuses_keeps_its_shape_but_no_data(statement: str) -> None:
    shown = redact(statement)
    assert SECRET not in shown and "ann@" not in shown and "4111" not in shown
    assert shown.startswith(SHAPE)


@pytest.mark.parametrize(
    ("statement", "shown"),
    [
        ("SELECT E'it\\'s ann secret", "SELECT '?'"),
        ("SELECT $tag$ann $x$ still secret", "SELECT '?'"),
        ("SELECT $a$ann$a$, $b$x$b$ FROM t WHERE 'cut", "SELECT '?', '?' FROM t WHERE '?'"),
        (
            'SELECT "ok""x", a$b$c, $1, t1 FROM t WHERE \'cut',
            'SELECT "ok""x", a$b$c, $1, t1 FROM t WHERE \'?\'',
        ),
        ('SELECT "cut""', 'SELECT "?"'),
        (
            "SELECT x FROM t -- ann\nWHERE a = 1 AND b = 'cut",
            "SELECT x FROM t /*…*/\nWHERE a = ? AND b = '?'",
        ),
        ("SELECT 'C:\\' AS p FROM t", "SELECT '?'"),
    ],
)
def test_the_fallback_masks_exactly(statement: str, shown: str) -> None:
    assert redact(statement) == shown


def test_no_secret_survives_a_cut_anywhere() -> None:
    # Q and Z appear nowhere in the statement but in its constants and comments
    statement = (
        "SELECT id FROM crm.client_list WHERE a = E'QZ\\'QZ\\\\' AND b = $t$QZ$u$QZ$$QZ$t$ "
        "/* QZ /* QZ */ QZ */ AND c = 'QZ''QZ' AND d = 'QZ\\' AND e = \"idQ\" -- QZ\n"
        "AND f = U&'QZ' AND g = b'0' AND h = 42 ORDER BY 1"
    )
    for at in range(len(statement) + 1):
        shown = redact(statement[:at])
        assert "Z" not in shown, (at, shown)
        assert shown.startswith("SELECT id FROM crm.client_list"[:at])
