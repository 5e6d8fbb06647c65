"""The pgaudit record inside a log message.

`AUDIT: TYPE,ID,SUBID,CLASS,COMMAND,OBJECT_TYPE,OBJECT_NAME,STATEMENT,PARAMETER[,ROWS]`.
pgaudit writes each text field CSV-quoted when it holds a comma, quote, CR or LF; the parameter
list is the values, each CSV-quoted when needed, joined by commas, then quoted again as one field.
So a value like `Org 1,5` arrives two levels deep in the message (three in csvlog, whose message
column is quoted once more).
"""

from __future__ import annotations

import csv
from typing import NamedTuple

AUDIT_PREFIX = "AUDIT: "
NOT_LOGGED = "<not logged>"
PREVIOUSLY_LOGGED = "<previously logged>"
NO_PARAMETERS = "<none>"
LONG_PARAM_SUPPRESSED = "<long param suppressed>"

CSV_FIELD_LIMIT = 1 << 30
"""The csv module refuses a field over 128 KiB by default: a statement padded past that (a
comment will do) made its audit record malformed, the read unseen. PostgreSQL takes statements
up to 1 GB; the framers bound what is read (logformats.MAX_OPEN_RECORD), not this."""
csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))  # per process: workers too

STATEMENT_TOKENS = frozenset({NOT_LOGGED, PREVIOUSLY_LOGGED})
PARAMETER_TOKENS = frozenset({NOT_LOGGED, PREVIOUSLY_LOGGED, NO_PARAMETERS})
_AUDIT_TYPES = frozenset({"SESSION", "OBJECT"})


MAX_DIGITS = 20
"""pgaudit's ids and row counts are 64-bit: a longer number is damage (and `int` refuses a
number of over 4,300 digits)."""


class MalformedRecord(ValueError):
    """A log record that claims to be something it cannot be parsed as."""


class AuditFields(NamedTuple):
    """The fields of one pgaudit record, tokens already resolved."""

    audit_type: str
    statement_id: int
    substatement_id: int
    class_: str
    command: str
    object_type: str
    object_name: str
    statement: str | None
    parameters: tuple[str, ...] | None
    rows: int | None


def split_csv(text: str) -> list[str]:
    r"""Split one CSV line (quoted fields may hold newlines), strictly.

    >>> split_csv('a,"b,\x22\x22c\x22\x22\x22,')
    ['a', 'b,"c"', '']

    Raises:
        MalformedRecord: bad quoting.
    """
    if '"' not in text and "\n" not in text and "\r" not in text:
        return text.split(",")
    try:
        rows = list(csv.reader((text,), strict=True))
    except csv.Error as exc:
        raise MalformedRecord(f"bad CSV quoting: {exc}") from None
    if len(rows) != 1:
        raise MalformedRecord("a CSV field spans past the record")
    return rows[0]


def parse_parameters(field: str) -> tuple[str, ...] | None:
    r"""The bind parameters of the PARAMETER field (None for the tokens that mean "no values").

    >>> parse_parameters('<none>') is None
    True
    >>> parse_parameters('42,"Org 1,5",\x22say \x22\x22hi\x22\x22\x22')
    ('42', 'Org 1,5', 'say "hi"')
    """
    if field in PARAMETER_TOKENS:
        return None
    return tuple(split_csv(field))


def split_csv_many(texts: list[str]) -> list[list[str] | MalformedRecord]:
    """`split_csv` over many texts at once (one C-level reader: ~3x cheaper per text).

    Each result is the fields of that text, or the MalformedRecord saying why it is not CSV.
    """
    try:
        rows: list[list[str] | MalformedRecord] = list(csv.reader(texts, strict=True))
        if len(rows) == len(texts):
            return rows
    except csv.Error:
        pass
    out: list[list[str] | MalformedRecord] = []
    for text in texts:
        try:
            out.append(split_csv(text))
        except MalformedRecord as exc:
            out.append(exc)
    return out


def audit_fields(fields: list[str]) -> AuditFields:
    """The pgaudit record of the CSV fields after `AUDIT: `.

    Raises:
        MalformedRecord: not a well-formed pgaudit record.
    """
    count = len(fields)
    if count != 9 and count != 10:
        raise MalformedRecord(f"pgaudit record has {count} fields, expected 9 or 10")
    audit_type = fields[0]
    if audit_type != "OBJECT" and audit_type != "SESSION":
        raise MalformedRecord(f"unknown pgaudit audit type {audit_type[:40]!r}")
    statement_id, substatement_id = fields[1], fields[2]
    rows = fields[9] if count == 10 else "0"
    if not (statement_id.isdecimal() and substatement_id.isdecimal() and rows.isdecimal()):
        raise MalformedRecord("pgaudit record has a non-numeric id or row count")
    if max(len(statement_id), len(substatement_id), len(rows)) > MAX_DIGITS:
        raise MalformedRecord(f"pgaudit record has an id or row count over {MAX_DIGITS} digits")
    statement: str | None = fields[7]
    if statement in STATEMENT_TOKENS:
        statement = None
    raw = fields[8]
    parameters: tuple[str, ...] | None
    if raw in PARAMETER_TOKENS:
        parameters = None
    elif '"' in raw or "\n" in raw or "\r" in raw:
        parameters = tuple(split_csv(raw))
    else:
        parameters = tuple(raw.split(","))
    return AuditFields._make(
        (
            audit_type,
            int(statement_id),
            int(substatement_id),
            fields[3],
            fields[4],
            fields[5],
            fields[6],
            statement,
            parameters,
            int(rows) if count == 10 else None,
        )
    )


def parse_audit_message(message: str) -> AuditFields:
    """Parse a log message that starts with `AUDIT: `.

    The message is split whole, prefix and all, as `EventBuilder.audits` splits it: pgaudit never
    quotes the audit type, so `AUDIT: "OBJECT",...` is malformed for both.

    Raises:
        MalformedRecord: not a well-formed pgaudit record.
    """
    fields = split_csv(message)
    fields[0] = fields[0][len(AUDIT_PREFIX) :]
    return audit_fields(fields)
