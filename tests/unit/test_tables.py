"""Watched tables: names as SQL writes them, matched against the OBJECT_NAME pgaudit writes."""

from __future__ import annotations

import pytest

from core.tables import TableName, WatchedTables, split_qualified_name
from tests.unit.pglog import audit_message, csvlog, parse_log


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("crm.client_list", ("crm", "client_list")),
        ("CRM.Client_List", ("crm", "client_list")),
        (" crm . client_list ", ("crm", "client_list")),
        ('crm."Client List"', ("crm", "Client List")),
        ('"crm"."client_list"', ("crm", "client_list")),
        ('crm."a.b"', ("crm", "a.b")),
        ('crm."say ""hi"""', ("crm", 'say "hi"')),
        ("client_list", ("client_list",)),
    ],
)
def test_split_qualified_name(text: str, parts: tuple[str, ...]) -> None:
    assert split_qualified_name(text) == parts


@pytest.mark.parametrize(
    "text", ["", ".", "crm.", ".t", "crm..t", 'crm."t', 'crm.t"', 'crm."t"x', 'c"rm.t']
)
def test_split_qualified_name_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        split_qualified_name(text)


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("crm.client_list", TableName("crm", "client_list")),
        ("client_list", TableName(None, "client_list")),
        ('crm."Client List"', TableName("crm", "Client List")),
    ],
)
def test_table_name_parse_and_str_round_trip(text: str, table: TableName) -> None:
    assert TableName.parse(text) == table
    assert str(table) == text
    assert TableName.parse(str(table)) == table


@pytest.mark.parametrize("text", ["a.b.c", "", 'crm."x'])
def test_table_name_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        TableName.parse(text)


WATCHED = WatchedTables(
    [TableName("crm", "client_list"), TableName(None, "leads"), TableName("crm", "Client List")]
)


@pytest.mark.parametrize(
    ("object_name", "expected"),
    [
        ("crm.client_list", "crm.client_list"),
        ('crm."client_list"', "crm.client_list"),
        ("public.client_list", None),
        ("crm.client_list_archive", None),
        ("sales.leads", "leads"),
        ("leads", "leads"),
        ('crm."Client List"', 'crm."Client List"'),
        ('crm."client list"', None),
        ("", None),
        ('crm."broken', None),
    ],
)
def test_match_object_name(object_name: str, expected: str | None) -> None:
    found = WATCHED.match(object_name)
    assert (str(found) if found else None) == expected
    assert WATCHED.match(object_name) is found  # cached answer is the same


def test_match_relname_for_permission_denied_messages() -> None:
    assert WATCHED.match_relname("client_list") == TableName("crm", "client_list")
    assert WATCHED.match_relname("Client List") == TableName("crm", "Client List")
    assert WATCHED.match_relname("orders") is None


def test_empty_watch_list_is_false() -> None:
    assert not WatchedTables([])
    assert WATCHED


def test_schema_named_like_the_watched_table_is_not_the_table() -> None:
    create_schema = audit_message(
        "CREATE SCHEMA client_list",
        audit_type="SESSION",
        class_="DDL",
        command="CREATE SCHEMA",
        object_type="SCHEMA",
        object_name="client_list",
    )
    events, _ = parse_log("csvlog", csvlog(create_schema), ["crm.client_list"])
    assert events == []
