"""The pgaudit record inside a log message: `AUDIT: TYPE,ID,SUBID,CLASS,...,PARAMETER[,ROWS]`.

First the whole corpus of real pgaudit output (its own regression suite) must parse, then the
quoting pgaudit does three levels deep, then every way a message can be broken.
"""

from __future__ import annotations

from collections import Counter

import pytest

from collectors.pgaudit import (
    LONG_PARAM_SUPPRESSED,
    AuditFields,
    MalformedRecord,
    parse_audit_message,
    parse_parameters,
    split_csv,
)
from tests.unit.pglog import audit_message, corpus_messages

TOKENS = ("<none>", "<not logged>", "<previously logged>")


# ------------------------------------------------------------------------------- the real corpus


def test_every_corpus_message_parses_into_typed_fields() -> None:
    messages = corpus_messages()
    assert len(messages) == 415
    for message in messages:
        fields = parse_audit_message(message)
        assert fields.audit_type in ("SESSION", "OBJECT"), message
        assert isinstance(fields.statement_id, int) and fields.statement_id > 0, message
        assert isinstance(fields.substatement_id, int) and fields.substatement_id > 0, message
        assert fields.class_ and fields.command, message
        assert fields.rows is None or isinstance(fields.rows, int), message
        assert fields.statement not in TOKENS, message
        if fields.parameters is not None:
            assert all(isinstance(p, str) for p in fields.parameters), message
            assert not set(fields.parameters) & {"<none>", "<not logged>"}, message


def test_corpus_has_both_record_lengths_and_multiline_statements() -> None:
    """The corpus exercises what the parser must handle: 9 and 10 fields, newlines, tokens."""
    parsed = [parse_audit_message(m) for m in corpus_messages()]
    with_rows = Counter(f.rows is not None for f in parsed)
    assert with_rows[True] > 0 and with_rows[False] > 0
    assert any(f.statement and "\n" in f.statement for f in parsed)
    assert any(f.statement is None for f in parsed)
    assert any(f.parameters is None for f in parsed)
    assert any(f.parameters is not None for f in parsed)


def test_corpus_previously_logged_resolves_statement_and_parameters_to_none() -> None:
    previously = [m for m in corpus_messages() if m.endswith("<previously logged>")]
    assert previously
    for message in previously:
        fields = parse_audit_message(message)
        assert fields.statement is None and fields.parameters is None, message


def test_corpus_long_param_suppressed_stays_a_parameter_value() -> None:
    suppressed = [m for m in corpus_messages() if LONG_PARAM_SUPPRESSED in m]
    assert suppressed
    for message in suppressed:
        parameters = parse_audit_message(message).parameters
        assert parameters is not None and LONG_PARAM_SUPPRESSED in parameters, message


def test_corpus_null_parameters_are_empty_strings() -> None:
    """pgaudit writes a NULL parameter as nothing between commas: `",,1"` is ('', '', '1')."""
    message = next(m for m in corpus_messages() if m.endswith('",,1"'))
    assert parse_audit_message(message).parameters == ("", "", "1")


# ------------------------------------------------------------------------- fields one at a time

BASE = "AUDIT: OBJECT,12,3,READ,SELECT,TABLE,crm.client_list,"


@pytest.mark.parametrize(
    ("tail", "statement", "parameters", "rows"),
    [
        ("SELECT 1,<none>", "SELECT 1", None, None),
        ("SELECT 1,<none>,42", "SELECT 1", None, 42),
        ("SELECT 1,<none>,0", "SELECT 1", None, 0),
        ("<not logged>,<not logged>", None, None, None),
        ("<not logged>,<not logged>,7", None, None, 7),
        ("<previously logged>,<previously logged>", None, None, None),
        ("SELECT $1,42", "SELECT $1", ("42",), None),
        ("SELECT $1,<long param suppressed>", "SELECT $1", (LONG_PARAM_SUPPRESSED,), None),
        ('SELECT $1,"1,<long param suppressed>",1', "SELECT $1", ("1", LONG_PARAM_SUPPRESSED), 1),
        ('"SELECT a,b FROM t",<none>', "SELECT a,b FROM t", None, None),
        ('"SELECT ""Id"" FROM t",<none>', 'SELECT "Id" FROM t', None, None),
        (
            '"SELECT *\n  FROM t\n WHERE a = 1",<none>,3',
            "SELECT *\n  FROM t\n WHERE a = 1",
            None,
            3,
        ),
        ('"SELECT 1\r\n",<none>', "SELECT 1\r\n", None, None),
        ("SELECT $1,", "SELECT $1", ("",), None),
    ],
    ids=[
        "nine-fields",
        "ten-fields",
        "zero-rows",
        "not-logged",
        "not-logged-with-rows",
        "previously-logged",
        "one-parameter",
        "long-param-suppressed-alone",
        "long-param-suppressed-in-list",
        "comma-in-statement",
        "quote-in-statement",
        "multiline-statement",
        "crlf-in-statement",
        "one-null-parameter",
    ],
)
def test_fields(
    tail: str, statement: str | None, parameters: tuple[str, ...] | None, rows: int | None
) -> None:
    assert parse_audit_message(BASE + tail) == AuditFields(
        "OBJECT", 12, 3, "READ", "SELECT", "TABLE", "crm.client_list", statement, parameters, rows
    )


def test_quoted_object_name_is_kept_as_pgaudit_wrote_it() -> None:
    fields = parse_audit_message(audit_message(object_name='crm."Client, List"'))
    assert fields.object_name == 'crm."Client, List"'


# ----------------------------------------------------------------- parameters, three levels deep

DRIVER_VALUES = ("Org 1,5", "{1,2,3}", 'say "hi"')


def test_driver_parameters_come_back_exactly_from_two_levels_of_quoting() -> None:
    message = audit_message("SELECT * FROM crm.client_list WHERE a=$1", DRIVER_VALUES)
    assert message.endswith('"""Org 1,5"",""{1,2,3}"",""say """"hi"""""""')
    assert parse_audit_message(message).parameters == DRIVER_VALUES


@pytest.mark.parametrize(
    "values",
    [
        ("42",),
        ("",),
        ("", "", "3"),
        ("a\nb", "c\r\nd"),
        (",", '"', '""', ",,"),
        (LONG_PARAM_SUPPRESSED, "x"),
        ("Zoë", "日本", "🙂"),
        ("<none>x", " <not logged>"),
    ],
    ids=["one", "empty", "nulls", "newlines", "separators", "suppressed", "unicode", "near-tokens"],
)
def test_parameter_values_round_trip(values: tuple[str, ...]) -> None:
    assert parse_audit_message(audit_message("SELECT $1", values)).parameters == values


@pytest.mark.parametrize("token", TOKENS)
def test_parameter_tokens_mean_no_values(token: str) -> None:
    assert parse_parameters(token) is None


def test_split_csv_keeps_empty_trailing_field() -> None:
    assert split_csv("a,,") == ["a", "", ""]


# --------------------------------------------------------------------------------- malformed

MALFORMED = {
    "8-fields": "AUDIT: OBJECT,1,1,READ,SELECT,TABLE,crm.client_list,SELECT 1",
    "11-fields": BASE + "SELECT 1,<none>,1,extra",
    "empty": "AUDIT: ",
    "non-numeric-statement-id": "AUDIT: OBJECT,x,1,READ,SELECT,TABLE,t,SELECT 1,<none>",
    "empty-substatement-id": "AUDIT: OBJECT,1,,READ,SELECT,TABLE,t,SELECT 1,<none>",
    "fractional-id": "AUDIT: OBJECT,1.5,1,READ,SELECT,TABLE,t,SELECT 1,<none>",
    "non-numeric-rows": BASE + "SELECT 1,<none>,many",
    "unknown-type": "AUDIT: SESION,1,1,READ,SELECT,TABLE,t,SELECT 1,<none>",
    "lowercase-type": "AUDIT: object,1,1,READ,SELECT,TABLE,t,SELECT 1,<none>",
    "unterminated-quote": BASE + '"SELECT 1,<none>',
    "text-after-closing-quote": BASE + '"SELECT"1,<none>',
    "bare-newline": BASE + "SELECT\n1,<none>",
    "unterminated-parameter-list": BASE + 'SELECT $1,"""a"",b',
    "parameter-value-unquoted-newline": BASE + 'SELECT $1,"a\nb"',
}


@pytest.mark.parametrize("message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_raise(message: str) -> None:
    with pytest.raises(MalformedRecord):
        parse_audit_message(message)


def test_malformed_record_is_a_value_error_with_a_short_reason() -> None:
    with pytest.raises(ValueError, match="8 fields, expected 9 or 10"):
        parse_audit_message(MALFORMED["8-fields"])
