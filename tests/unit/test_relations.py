"""Relations named by a statement text, from its parse tree, and which of them are watched."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from collectors import relations as relations_module
from collectors.relations import (
    CUT_TRIES,
    PARSE_CHARS,
    SHOWN_CHARS,
    WatchedRelations,
    relations,
    shown,
    statements,
)
from core.tables import TableName


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT * FROM crm.clients", {("crm", "clients")}),
        ("select * from Clients", {("", "clients")}),
        ('SELECT * FROM "CRM"."Client List"', {("CRM", "Client List")}),
        ("SELECT * FROM db.crm.clients", {("crm", "clients")}),
        ("SELECT id FROM crm.clients WHERE id = $1 AND name = $2", {("crm", "clients")}),
        ("COPY crm.clients TO STDOUT", {("crm", "clients")}),
        ("COPY crm.clients (id, name) TO STDOUT WITH (FORMAT csv)", {("crm", "clients")}),
        ("COPY (SELECT * FROM crm.clients WHERE id > 3) TO STDOUT", {("crm", "clients")}),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM crm.clients", {("crm", "clients")}),
        ("CREATE TABLE loot AS SELECT * FROM crm.clients", {("crm", "clients"), ("", "loot")}),
        ("SELECT * INTO loot FROM crm.clients", {("crm", "clients"), ("", "loot")}),
        ("EXPLAIN (ANALYZE) SELECT * FROM crm.clients", {("crm", "clients")}),
        (
            "WITH c AS (SELECT * FROM crm.clients) SELECT * FROM c JOIN crm.orders o USING (id)",
            {("crm", "clients"), ("crm", "orders"), ("", "c")},
        ),
        ("SELECT (SELECT max(id) FROM crm.clients) + 1", {("crm", "clients")}),
        ("SELECT export((SELECT array_agg(c) FROM crm.clients c))", {("crm", "clients")}),
        (
            "SELECT * FROM generate_series(1, (SELECT count(*) FROM crm.clients))",
            {("crm", "clients")},
        ),
        (
            "SELECT * FROM x WHERE id IN (SELECT id FROM crm.clients)",
            {("", "x"), ("crm", "clients")},
        ),
        (
            "CREATE FUNCTION f() RETURNS bigint BEGIN ATOMIC SELECT count(*) FROM crm.clients; END",
            {("crm", "clients")},
        ),
        ("BEGIN; SELECT 1; FETCH 10 FROM c; SELECT * FROM crm.clients", {("crm", "clients")}),
        ("INSERT INTO a.t SELECT * FROM crm.clients", {("a", "t"), ("crm", "clients")}),
        ("SELECT * FROM crm.clients t1, crm.clients t2", {("crm", "clients")}),
        ("SELECT 1", set()),
        ("SELECT * FROM crm.all_clients()", set()),
        ("FETCH 100 FROM c", set()),
        ("SET pgaudit.log = 'none'", set()),
        # cut by track_activity_query_size, or not SQL at all: nothing, never an exception
        ("SELECT * FROM crm.clients WHERE name = 'abc", set()),
        ("COPY (SELECT id, name, email, phone FROM crm.clients WHERE", set()),
        ("<insufficient privilege>", set()),
        ("", set()),
        ("SELECT \x00 FROM crm.clients", set()),
        ("(" * 10_000, set()),
    ],
)
def test_relations(text: str, expected: set[tuple[str, str]]) -> None:
    found = relations(text)
    assert set(found) == expected
    assert len(found) == len(set(found))  # each once


def test_relations_keep_the_order_of_the_text() -> None:
    assert relations("SELECT * FROM a.x JOIN b.y ON true JOIN a.x z ON true") == (
        ("a", "x"),
        ("b", "y"),
    )


WATCHED = WatchedRelations([TableName.parse("crm.clients"), TableName.parse("orders")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT * FROM crm.clients", ("crm.clients",)),
        ("SELECT * FROM clients", ("crm.clients",)),  # search_path unknown: may be it
        ("SELECT * FROM other.clients", ()),
        ("SELECT * FROM shop.orders JOIN orders USING (id)", ("orders",)),
        ("COPY (SELECT * FROM crm.clients JOIN x.orders USING (id)) TO STDOUT", None),
        ("SELECT * FROM crm.clients_archive", ()),
        ("SELECT * FROM crm.clients WHERE", ()),
        ("SELECT * FROM CRM.Clients", ("crm.clients",)),
        ('SELECT * FROM crm.U&"cl\\0069ents"', ("crm.clients",)),  # escapes spell the name
        ("SELECT * FROM crm.accounts", ()),  # never parsed: no watched name in the text
    ],
)
def test_watched_relations(text: str, expected: tuple[str, ...] | None) -> None:
    found = WATCHED.named(text)
    if expected is None:
        assert set(found) == {"crm.clients", "orders"}
    else:
        assert found == expected


def test_watched_relations_cache_by_key_and_stay_bounded() -> None:
    watched = WatchedRelations([TableName.parse("crm.clients")], limit=3)
    assert watched.named("SELECT * FROM crm.clients", key=101) == ("crm.clients",)
    # a key is answered from the cache, whatever text comes with it (a queryid's text is fixed)
    assert watched.named("SELECT 1", key=101) == ("crm.clients",)
    for key in (102, 103, 104):
        watched.named("SELECT 1", key=key)
    assert watched.cached == 3
    assert watched.named("SELECT 1", key=101) == ()  # 101 was the least recently used
    watched.forget(101)
    assert watched.cached == 2


def test_watched_relations_quote_names_as_table_names_do() -> None:
    watched = WatchedRelations([TableName.parse('crm."Client List"')])
    assert watched.named('SELECT * FROM crm."Client List"') == ('crm."Client List"',)
    assert watched.named("SELECT * FROM crm.client_list") == ()


def _in_list(count: int = 12_000) -> str:
    return ", ".join(f"${i}" for i in range(1, count + 1))


# A statement longer than PARSE_CHARS, as the sources' SQL gives it: cut there, anywhere.
HEAD = "SELECT a FROM crm.clients; "
CUT_NAME = (
    HEAD
    + " " * (PARSE_CHARS - len(HEAD) - len("SELECT a FROM crm.ord"))
    + ("SELECT a FROM crm.orders")
)
CLIENTS = {("crm", "clients")}
JOIN = "SELECT * FROM crm.clients c JOIN x.orders o ON c.id = o.id WHERE o.id IN"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"SELECT * FROM crm.clients WHERE id IN ({_in_list()})", CLIENTS),
        (f"COPY (SELECT * FROM crm.clients WHERE id IN ({_in_list()})) TO STDOUT", CLIENTS),
        (f"{JOIN} ({_in_list()})", {("crm", "clients"), ("x", "orders")}),
        (f"INSERT INTO loot SELECT * FROM crm.clients WHERE id IN ({_in_list()})", None),
        ("SELECT * FROM crm.clients /*" + "x" * 70_000 + "*/", CLIENTS),
        ("SELECT * FROM crm.clients WHERE note = '" + "x" * 70_000 + "'", CLIENTS),
        ("SELECT * FROM crm.clients WHERE CASE " + "WHEN a THEN b " * 6_000 + "END", CLIENTS),
        ("SELECT * FROM crm.clients WHERE " + "(" * 70_000, CLIENTS),
        ("SELECT * FROM crm.clients WHERE x = ARRAY" + "[" * 70_000, CLIENTS),
        (CUT_NAME, CLIENTS),  # not ("crm", "ord"): a name cut in two is no name
        # named only past the cut: not seen (the table must be named early)
        (f"SELECT * FROM x WHERE id IN ({_in_list()}) UNION SELECT * FROM crm.clients", None),
        ("(" * 70_000, set()),
        ("SELECT " + "1+" * 40_000, set()),  # parses, too deep to read
    ],
    ids=[
        "in-list",
        "copy",
        "join",
        "insert",
        "comment",
        "string",
        "case",
        "parens",
        "brackets",
        "cut-name",
        "late",
        "garbage",
        "deep",
    ],
)
def test_a_cut_text_names_what_its_beginning_names(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: set[tuple[str, str]] | None
) -> None:
    parsed: list[int] = []
    parser = relations_module.parser

    def spy(sql: str) -> str:
        parsed.append(len(sql))
        return parser.parse_sql_json(sql)

    fake = SimpleNamespace(parse_sql_json=spy, scan=parser.scan, ParseError=parser.ParseError)
    monkeypatch.setattr(relations_module, "parser", fake)
    relations_module.parse_tree.cache_clear()
    assert len(text) > PARSE_CHARS
    found = relations(text[:PARSE_CHARS])
    if expected is None:  # INSERT: the target too; UNION: the first branch only
        expected = {("", "loot"), *CLIENTS} if text.startswith("INSERT") else {("", "x")}
    assert set(found) == expected
    assert relations(text) == found  # a longer text is read as if cut there
    # the bound on the work: a few parses of its beginning (closed: up to twice as long)
    assert len(parsed) <= 2 * CUT_TRIES
    assert all(n <= 2 * PARSE_CHARS for n in parsed)


def test_a_cut_copy_of_a_query_is_a_copy_out() -> None:
    stmts = statements(f"COPY (SELECT * FROM crm.clients WHERE id IN ({_in_list()})) TO STDOUT")
    assert stmts is not None
    (copy,) = stmts
    assert "CopyStmt" in copy and not copy["CopyStmt"].get("is_from")
    cut_in = "COPY crm.clients FROM '/tmp/" + "x" * 70_000  # a COPY FROM is never read as TO
    assert statements(cut_in) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("SELECT 1", "SELECT 1"), ("x" * SHOWN_CHARS, "x" * SHOWN_CHARS)],
)
def test_shown_texts_are_whole_up_to_the_limit(text: str, expected: str) -> None:
    assert shown(text) == expected


def test_shown_texts_are_cut_with_an_ellipsis() -> None:
    cut = shown("x" * 100_000)
    assert len(cut) == SHOWN_CHARS and cut.endswith("…")
