"""The shape of a statement: what it reads (kind, flags, LIMIT, keys), and the cache in front.

First the shapes of realistic statements, then text pgaudit may log that is not SQL, then the
cache: text hits, fingerprint hits that take each text's own constants without a parse, and
bounds. Every shape the cache gives is checked against an uncached `shape_of`.
"""

from __future__ import annotations

import random
import re

import pytest

from collectors.pgaudit import parse_audit_message
from core.shapes import Shape, ShapeCache, ShapeKind, ShapeStats, shape_of
from tests.unit.pglog import corpus_messages

BULK, FILTERED, KEY = ShapeKind.BULK, ShapeKind.FILTERED, ShapeKind.KEY_LOOKUP
AGGREGATE, WRITE, OTHER = ShapeKind.AGGREGATE, ShapeKind.WRITE, ShapeKind.OTHER
STAR = {"select_star": True}

CASES: list[tuple[str, Shape]] = [
    # reads without WHERE
    ("SELECT * FROM crm.clients", Shape(BULK, **STAR)),
    ("select id, name, email from crm.clients", Shape(BULK)),
    ("TABLE crm.clients", Shape(BULK, **STAR)),
    ("SELECT c.* FROM crm.clients c", Shape(BULK, **STAR)),
    ("SELECT * INTO tmp3 FROM crm.clients", Shape(BULK, **STAR)),
    ("SELECT * FROM crm.clients FOR SHARE SKIP LOCKED", Shape(BULK, **STAR)),
    ("SELECT json_agg(c) FROM crm.clients c", Shape(BULK)),
    ("SELECT string_agg(email, ',') FROM crm.clients", Shape(BULK)),
    ("SELECT count(*) OVER (), * FROM crm.clients", Shape(BULK, **STAR)),
    ("SELECT email, count(*) FROM crm.clients GROUP BY email", Shape(BULK)),
    (
        "SELECT c.name, o.total FROM crm.clients c JOIN crm.orders o ON o.client_id = c.id",
        Shape(BULK),
    ),
    # key lookups
    ("SELECT * FROM crm.clients WHERE id = 42", Shape(KEY, **STAR, key_literal=42)),
    ("SELECT name FROM crm.clients WHERE id = $1", Shape(KEY, key_param=0)),
    ("SELECT * FROM crm.clients WHERE client_id = '1042'", Shape(KEY, **STAR, key_literal=1042)),
    ("SELECT * FROM crm.clients WHERE email = $1 AND active", Shape(KEY, **STAR, key_param=0)),
    ("SELECT * FROM crm.clients WHERE uuid = 'a0eebc99-9c0b-4ef8'", Shape(KEY, **STAR)),
    (
        "SELECT * FROM crm.clients WHERE phone_number = '5551234'",
        Shape(KEY, **STAR, key_literal=5551234),
    ),
    ("SELECT * FROM crm.clients WHERE 42 = id", Shape(KEY, **STAR, key_literal=42)),
    ("SELECT * FROM crm.clients WHERE id = -5", Shape(KEY, **STAR, key_literal=-5)),
    ("SELECT * FROM crm.clients WHERE id = 3000000000", Shape(KEY, **STAR, key_literal=3000000000)),
    ("SELECT * FROM crm.clients WHERE id = 1.5", Shape(KEY, **STAR)),
    ("SELECT * FROM crm.clients WHERE id = $1::bigint", Shape(KEY, **STAR, key_param=0)),
    ("SELECT * FROM crm.clients WHERE id = '42'::int", Shape(KEY, **STAR, key_literal=42)),
    ("SELECT * FROM crm.clients WHERE id = NULL", Shape(KEY, **STAR)),
    (
        "SELECT * FROM crm.clients WHERE email = $2 AND id = 42 AND order_id = 7",
        Shape(KEY, **STAR, key_param=1, key_literal=42),
    ),
    ("SELECT * FROM crm.clients WHERE id IN (1, 2, 3)", Shape(KEY, **STAR, in_list=3)),
    ("SELECT * FROM crm.clients WHERE id IN ($1, $2)", Shape(KEY, **STAR, in_list=2)),
    ("SELECT * FROM crm.clients WHERE id = ANY($1)", Shape(KEY, **STAR, key_array_param=0)),
    (
        "SELECT * FROM crm.clients WHERE account_no = ANY($2::text[]) AND region = $1",
        Shape(KEY, **STAR, key_array_param=1),
    ),
    ("SELECT * FROM crm.clients WHERE id = ANY(ARRAY[1,2,3,4])", Shape(KEY, **STAR, in_list=4)),
    ("SELECT * FROM crm.clients WHERE id = ANY('{1,2,3}')", Shape(KEY, **STAR)),
    (
        "SELECT c.name, o.total FROM crm.clients c JOIN crm.orders o ON o.client_id = c.id"
        " WHERE c.id = $1",
        Shape(KEY, key_param=0),
    ),
    ("SELECT * FROM crm.clients WHERE id = $1 FOR UPDATE", Shape(KEY, **STAR, key_param=0)),
    # filtered reads
    ("SELECT * FROM crm.clients WHERE region = 'EU'", Shape(FILTERED, **STAR)),
    (
        "SELECT * FROM crm.clients WHERE created_at > now() - interval '1 day'",
        Shape(FILTERED, **STAR),
    ),
    ("SELECT * FROM crm.clients WHERE name LIKE 'A%'", Shape(FILTERED, **STAR)),
    ("SELECT * FROM crm.clients WHERE id = 1 OR id = 2", Shape(FILTERED, **STAR)),
    ("SELECT * FROM crm.clients WHERE NOT (id = 1)", Shape(FILTERED, **STAR)),
    ("SELECT * FROM crm.clients WHERE id NOT IN (1, 2)", Shape(FILTERED, **STAR)),
    ("SELECT * FROM crm.clients WHERE id = other_id", Shape(FILTERED, **STAR)),
    (
        "SELECT * FROM crm.clients WHERE id > $1 ORDER BY id LIMIT 1000",
        Shape(FILTERED, **STAR, limit=1000),
    ),
    # paging
    (
        "SELECT * FROM crm.clients ORDER BY id LIMIT 500 OFFSET 20000",
        Shape(BULK, **STAR, limit=500, offset=20000),
    ),
    (
        "SELECT * FROM crm.clients ORDER BY id OFFSET 20000 LIMIT 500",
        Shape(BULK, **STAR, limit=500, offset=20000),
    ),
    (
        "SELECT * FROM crm.clients ORDER BY id LIMIT $1 OFFSET $2",
        Shape(BULK, **STAR, limit_param=0, offset_param=1),
    ),
    ("SELECT * FROM crm.clients LIMIT ALL", Shape(BULK, **STAR)),
    ("SELECT * FROM crm.clients LIMIT ALL OFFSET 10", Shape(BULK, **STAR, offset=10)),
    (
        "SELECT * FROM crm.clients ORDER BY id OFFSET 10 ROWS FETCH FIRST 10 ROWS ONLY",
        Shape(BULK, **STAR, limit=10, offset=10),
    ),
    ("SELECT * FROM crm.clients FETCH FIRST ROW ONLY", Shape(BULK, **STAR, limit=1)),
    # aggregates
    ("SELECT count(*) FROM crm.clients", Shape(AGGREGATE)),
    ("SELECT region, count(*), avg(balance) FROM crm.clients GROUP BY region", Shape(AGGREGATE)),
    (
        "SELECT date_trunc('day', created_at) AS d, count(*) FROM crm.clients GROUP BY 1",
        Shape(AGGREGATE),
    ),
    ("SELECT round(avg(balance), 2) FROM crm.clients", Shape(AGGREGATE)),
    ("SELECT count(*) FROM crm.clients WHERE region = 'EU'", Shape(AGGREGATE)),
    ("SELECT max(id) FROM crm.clients WHERE id = 42", Shape(AGGREGATE, key_literal=42)),
    # subqueries, CTEs, set operations
    ("SELECT count(*) FROM (SELECT * FROM crm.clients) s", Shape(AGGREGATE)),
    ("WITH x AS (SELECT * FROM crm.clients) SELECT * FROM x", Shape(BULK, **STAR)),
    (
        "WITH x AS (SELECT * FROM crm.clients WHERE id = $1) SELECT * FROM x",
        Shape(KEY, **STAR, key_param=0),
    ),
    (
        "SELECT * FROM (SELECT * FROM crm.clients WHERE id = 7) s LIMIT 5",
        Shape(KEY, **STAR, key_literal=7, limit=5),
    ),
    ("SELECT id FROM crm.clients WHERE id = 1 UNION ALL SELECT id FROM crm.clients", Shape(BULK)),
    (
        "SELECT id FROM crm.clients WHERE id = $1 UNION SELECT id FROM crm.archive WHERE id = $2"
        " LIMIT 10",
        Shape(KEY, key_param=0, limit=10),
    ),
    # COPY and cursors
    ("COPY crm.client_list TO STDOUT", Shape(BULK, copy_out=True)),
    ("COPY crm.clients (id, email) TO '/tmp/x.csv' WITH (FORMAT csv)", Shape(BULK, copy_out=True)),
    ("COPY crm.clients TO PROGRAM 'gzip > /tmp/c.gz'", Shape(BULK, copy_out=True)),
    (
        "COPY (SELECT * FROM crm.clients WHERE id < 100) TO STDOUT",
        Shape(FILTERED, copy_out=True, **STAR),
    ),
    (
        "COPY (SELECT * FROM crm.clients) TO STDOUT WITH CSV HEADER",
        Shape(BULK, copy_out=True, **STAR),
    ),
    ("COPY crm.clients FROM STDIN", Shape(WRITE)),
    ("DECLARE c CURSOR FOR SELECT * FROM crm.clients", Shape(BULK, cursor=True, **STAR)),
    (
        "DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM crm.clients WHERE id = $1",
        Shape(KEY, cursor=True, **STAR, key_param=0),
    ),
    # writes and others
    ("INSERT INTO crm.clients (name) VALUES ($1)", Shape(WRITE)),
    ("UPDATE crm.clients SET name = $1 WHERE id = $2", Shape(WRITE)),
    ("DELETE FROM crm.clients WHERE id = 1", Shape(WRITE)),
    (
        "MERGE INTO crm.clients c USING staging s ON c.id = s.id WHEN MATCHED THEN DO NOTHING",
        Shape(WRITE),
    ),
    ("SET search_path = crm", Shape(OTHER)),
    ("GRANT SELECT ON crm.clients TO reader", Shape(OTHER)),
    ("EXPLAIN SELECT * FROM crm.clients", Shape(OTHER)),
    ("SELECT 1", Shape(OTHER)),
    ("VALUES (1), (2)", Shape(OTHER)),
    ("CREATE TABLE tmp2 AS (SELECT * FROM tmp)", Shape(BULK, **STAR)),
    ("CREATE TABLE tmp2 AS SELECT * FROM tmp WITH NO DATA", Shape(OTHER)),
    # several statements in one text: the widest
    ("SELECT 1; SELECT * FROM crm.clients", Shape(BULK, **STAR)),
    ("UPDATE crm.clients SET a = 1; SELECT count(*) FROM crm.clients", Shape(AGGREGATE)),
    (
        "SELECT * FROM crm.clients WHERE id = 1; COPY crm.clients TO STDOUT;",
        Shape(BULK, copy_out=True),
    ),
    # exact client text
    (
        "/* app=billing,traceparent='00-4bf92f3577b34da6' */ SELECT * FROM crm.clients -- all",
        Shape(BULK, **STAR),
    ),
    ("SELECT *\r\nFROM crm.clients\r\nWHERE id = 42\r\n", Shape(KEY, **STAR, key_literal=42)),
    ("select * FROM Crm.Clients WHERE ID = 9", Shape(KEY, **STAR, key_literal=9)),
    ('SELECT * FROM crm.clients WHERE "ID" = 5', Shape(KEY, **STAR, key_literal=5)),
    (
        "SELECT * FROM crm.clients WHERE email = $e$o'brien@example.com$e$",
        Shape(KEY, **STAR),
    ),
    ("SELECT * FROM crm.clients WHERE id = $$77$$", Shape(KEY, **STAR, key_literal=77)),
    ("SELECT * FROM crm.clients WHERE id = E'4\\x32'", Shape(KEY, **STAR, key_literal=42)),
    (
        "SELECT 'é' AS x, * FROM crm.clients WHERE id = 7 LIMIT 3",
        Shape(KEY, **STAR, key_literal=7, limit=3),
    ),
    (
        "SELECT * FROM crm.clients\n  -- the newest first\n  ORDER BY created_at DESC\n  LIMIT 50",
        Shape(BULK, **STAR, limit=50),
    ),
]

UNPARSABLE = [
    "SELECT * FROM t WHERE id = :id",
    "SELECT * FROM t WHERE id = :'id'",
    "<not logged>",
    "",
    "   \n",
    "-- just a comment",
    "\x00\x01\x7fgarbage\xff",
    "SELECT 1\x00; SELECT * FROM t",
    "SELECT '\udcff' FROM t",
    "SELECT * FROM",
    "SELECT * FROM t WHERE id = 'unterminated",
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_shape_of_statement(text: str, expected: Shape) -> None:
    assert shape_of(text) == expected


@pytest.mark.parametrize("text", UNPARSABLE)
def test_text_that_is_not_sql_has_no_shape(text: str) -> None:
    assert shape_of(text) == Shape(OTHER, parsed=False)
    cache = ShapeCache()
    assert cache.shape(text) == Shape(OTHER, parsed=False)
    assert cache.shape(text) == Shape(OTHER, parsed=False)
    assert cache.stats.failures == 1
    assert cache.stats.text_hits == 1


@pytest.mark.parametrize(
    ("text", "description"),
    [
        ("SELECT * FROM crm.clients", "SELECT * without WHERE"),
        ("SELECT id FROM crm.clients", "read without WHERE"),
        ("COPY crm.clients TO STDOUT", "COPY TO"),
        ("COPY (SELECT * FROM crm.clients) TO STDOUT", "COPY TO, SELECT * without WHERE"),
        ("DECLARE c CURSOR FOR SELECT * FROM t", "cursor, SELECT * without WHERE"),
        ("SELECT * FROM t WHERE id = $1", "key lookup"),
        ("SELECT * FROM t WHERE id IN (1, 2)", "key lookup of 2 keys"),
        (
            "SELECT * FROM t ORDER BY id LIMIT 500 OFFSET 20000",
            "SELECT * without WHERE, LIMIT 500 OFFSET 20000",
        ),
        ("SELECT * FROM t WHERE a > 1 LIMIT $1 OFFSET $2", "filtered read, LIMIT $1 OFFSET $2"),
        ("SELECT count(*) FROM t", "aggregate"),
        ("DELETE FROM t", "write"),
        ("SET x = 1", "other statement"),
        ("SELECT * FROM t WHERE id = :id", "unparsed statement"),
    ],
)
def test_describe_says_what_the_shape_is(text: str, description: str) -> None:
    assert shape_of(text).describe() == description


# ------------------------------------------------------------------------------ the cache

_INTEGER = re.compile(r"(?<![\w$.'])\d+(?![\w.'])")
_PARAM = re.compile(r"(?<![\w$])\$(\d+)")


def _variants(text: str) -> list[str]:
    """The text with other integers, and with its parameters written as integers."""
    return [
        _INTEGER.sub(lambda m: str(int(m.group()) * 7 + 3), text),
        _PARAM.sub(lambda m: str(10 + int(m.group(1))), text),
        _PARAM.sub(lambda m: f"'{20 + int(m.group(1))}'", text),
    ]


@pytest.mark.parametrize("text", [c[0] for c in CASES], ids=[c[0][:60] for c in CASES])
def test_cache_gives_each_variant_its_own_values(text: str) -> None:
    cache = ShapeCache()
    assert cache.shape(text) == shape_of(text)
    for variant in _variants(text):
        assert cache.shape(variant) == shape_of(variant), variant
    assert cache.shape(text) == shape_of(text)


_CONSTANT = re.compile(r"(?<![\w$.'])\d+(?![\w.'])|(?<![\w$])\$\d+|'\d+'")
_CONSTANTS = (
    "7",
    "3000000000",
    "'42'",
    "$3",
    "'abc'",
    "1.5",
    "E'12'",
    "e'\\\\1'",
    "$$8$$",
    "0x1F",
    "1_000",
    "TRUE",
    "NULL",
    "ALL",
    "/*c*/ 4",
    "-5",
    "- 6",
    "'1'\n'2'",
    "B'101'",
    "N'77'",
    "9::int",
    "'é'",
)


def test_cache_agrees_with_shape_of_whatever_the_constants() -> None:
    """Random constants (numbers, strings, parameters, keywords...) in every case's places."""
    pick = random.Random(20261129)
    cache = ShapeCache()
    for text, _ in CASES:
        cache.shape(text)
        for _ in range(30):
            variant = _CONSTANT.sub(lambda _: pick.choice(_CONSTANTS), text)
            assert cache.shape(variant) == shape_of(variant), variant
    assert cache.stats.fingerprint_hits > 500


def test_a_repeated_text_is_one_lookup() -> None:
    cache = ShapeCache()
    text = "SELECT * FROM crm.clients WHERE id = 42"
    first = cache.shape(text)
    assert cache.shape(text) is first
    assert cache.stats == ShapeStats(text_hits=1, fingerprint_hits=0, parses=1, failures=0)


def test_fingerprint_hit_takes_limit_offset_and_key_from_each_text_without_a_parse() -> None:
    cache = ShapeCache()
    base = "SELECT * FROM crm.clients WHERE id = {} ORDER BY id LIMIT {} OFFSET {}"
    assert cache.shape(base.format(42, 10, 5)) == Shape(
        KEY, **STAR, key_literal=42, limit=10, offset=5
    )
    assert cache.stats.parses == 1
    assert cache.shape(base.format(43, 500, 20000)) == Shape(
        KEY, **STAR, key_literal=43, limit=500, offset=20000
    )
    assert cache.shape(base.format("$1", "$2", "$3")) == Shape(
        KEY, **STAR, key_param=0, limit_param=1, offset_param=2
    )
    assert cache.shape(base.format("'0044'", 1, 0)) == Shape(
        KEY, **STAR, key_literal=44, limit=1, offset=0
    )
    assert cache.shape(base.format("'abc'", 2, "$1")) == Shape(KEY, **STAR, limit=2, offset_param=0)
    assert cache.stats == ShapeStats(text_hits=0, fingerprint_hits=4, parses=1, failures=0)


def test_fingerprint_hit_ignores_comments_and_needs_no_values() -> None:
    cache = ShapeCache()
    cache.shape("SELECT * FROM crm.clients")
    shape = cache.shape("/* traceparent='00-4bf9' */ SELECT *\n  FROM crm.clients -- export")
    assert shape == Shape(BULK, **STAR)
    assert cache.stats == ShapeStats(text_hits=0, fingerprint_hits=1, parses=1, failures=0)


def test_constants_in_other_places_of_one_fingerprint_are_told_apart() -> None:
    cache = ShapeCache()
    # one fingerprint: IN lists of any length, LIMIT/OFFSET in either order, LIMIT n or ALL
    assert cache.shape("SELECT * FROM t WHERE id IN (1, 2)").in_list == 2
    assert cache.shape("SELECT * FROM t WHERE id IN (1, 2, 3)").in_list == 3
    assert cache.shape("SELECT * FROM t WHERE id IN (7, 8, 9)").in_list == 3
    assert cache.stats.parses == 2
    paging = cache.shape("SELECT * FROM t LIMIT 5 OFFSET 9")
    assert (paging.limit, paging.offset) == (5, 9)
    paging = cache.shape("SELECT * FROM t OFFSET 9 LIMIT 5")
    assert (paging.limit, paging.offset) == (5, 9)
    assert cache.shape("SELECT * FROM t LIMIT ALL OFFSET 9").limit is None
    assert cache.shape("SELECT * FROM t LIMIT 6 OFFSET 10") == Shape(
        BULK, **STAR, limit=6, offset=10
    )
    assert cache.shape("SELECT * FROM t LIMIT ALL OFFSET 3") == Shape(BULK, **STAR, offset=3)


def test_a_kind_that_hangs_on_a_constant_is_parsed_per_text() -> None:
    cache = ShapeCache()
    # GROUP BY 2 groups by region (an aggregate); GROUP BY 1 by max(id), a key: rows come out.
    # GROUP BY $1 has the same fingerprint (regression: it used to fix the kind for all three).
    assert cache.shape("SELECT max(id), region FROM t GROUP BY $1").kind is BULK
    assert cache.shape("SELECT max(id), region FROM t GROUP BY 2").kind is AGGREGATE
    assert cache.shape("SELECT max(id), region FROM t GROUP BY 1").kind is BULK
    assert cache.stats.parses == 3


def test_any_of_a_literal_and_any_of_a_parameter_are_told_apart() -> None:
    # one fingerprint and one skeleton (regression: the literal's recipe had no slot for $1)
    cache = ShapeCache()
    assert cache.shape("SELECT * FROM t WHERE id = ANY('{1,2}')").key_array_param is None
    assert cache.shape("SELECT * FROM t WHERE id = ANY($2)").key_array_param == 1
    assert cache.stats.fingerprint_hits == 1


@pytest.mark.parametrize(
    "texts",
    [
        # E'' with escapes, strings continued on the next line, nested comments
        ("SELECT * FROM t WHERE id = E'4\\x32'", "SELECT * FROM t WHERE id = E'4\\x33'"),
        ("SELECT * FROM t WHERE id = '4'\n'2'", "SELECT * FROM t WHERE id = '4'\n'3'"),
        (
            "SELECT * FROM t /* a /* b */ */ WHERE id = 1",
            "SELECT * FROM t /* a /* b */ */ WHERE id = 2",
        ),
        ("SELECT * FROM t WHERE id = U&'4'", "SELECT * FROM t WHERE id = U&'5'"),
    ],
)
def test_text_beyond_the_lexer_is_parsed_rather_than_guessed(texts: tuple[str, str]) -> None:
    cache = ShapeCache()
    for text in texts:
        assert cache.shape(text) == shape_of(text)
    assert cache.stats.parses == 2


def test_caches_are_bounded() -> None:
    cache = ShapeCache(max_texts=2, max_fingerprints=2)
    texts = [f"SELECT * FROM t{i} WHERE id = {i}" for i in range(5)]
    for text in texts:
        cache.shape(text)
    assert cache.stats.parses == 5
    # t0 went when the text cache was cleared, and its fingerprint too: parsed again
    assert cache.shape(texts[0]) == Shape(KEY, **STAR, key_literal=0)
    assert cache.stats == ShapeStats(text_hits=0, fingerprint_hits=0, parses=6, failures=0)
    assert cache.shape(texts[4]) == Shape(KEY, **STAR, key_literal=4)
    assert cache.stats.text_hits == 1


def test_long_texts_are_cached_by_fingerprint_only() -> None:
    cache = ShapeCache()
    columns = ", ".join(f"c{i}" for i in range(1000))
    text = f"SELECT {columns} FROM crm.clients WHERE id = 1"
    assert len(text) > 4096
    assert cache.shape(text) == Shape(KEY, key_literal=1)
    assert cache.shape(text) == Shape(KEY, key_literal=1)
    assert cache.shape(text.replace("id = 1", "id = 2")) == Shape(KEY, key_literal=2)
    assert cache.stats == ShapeStats(text_hits=0, fingerprint_hits=2, parses=1, failures=0)


def test_a_megabyte_statement_does_not_blow_up() -> None:
    keys = ",\n".join(str(i) for i in range(150_000))
    text = f"SELECT * FROM crm.clients WHERE id IN ({keys})"
    assert len(text) > 1_000_000 and text.count("\n") > 10_000
    expected = Shape(KEY, **STAR, in_list=150_000)
    assert shape_of(text) == expected
    cache = ShapeCache()
    assert cache.shape(text) == expected
    assert cache.shape(text.replace("(0,", "(7,")) == expected
    assert cache.stats == ShapeStats(text_hits=0, fingerprint_hits=1, parses=1, failures=0)
    deep = "SELECT * FROM t WHERE " + "(" * 20_000 + "id = 1" + ")" * 20_000
    assert isinstance(shape_of(deep), Shape)
    assert isinstance(cache.shape(deep), Shape)


# ------------------------------------------------------------------------------ the real corpus


def _corpus_statements() -> list[str]:
    statements = [parse_audit_message(m).statement for m in corpus_messages()]
    return [s for s in statements if s is not None]


def test_every_corpus_statement_has_a_shape_and_the_cache_agrees() -> None:
    statements = _corpus_statements()
    assert len(statements) > 300
    cache = ShapeCache()
    shapes = {}
    for statement in statements:
        shape = shape_of(statement)
        assert isinstance(shape, Shape), statement
        assert cache.shape(statement) == shape, statement
        shapes[statement] = shape
    assert {s.kind for s in shapes.values()} >= {BULK, FILTERED, AGGREGATE, WRITE, OTHER}
    assert shapes["COPY account TO stdout"] == Shape(BULK, copy_out=True)
    select = "SELECT *\n  FROM account\n WHERE password = 'HASH2'\n   FOR UPDATE"
    assert shapes[select] == Shape(FILTERED, select_star=True)
    # pgaudit redacts passwords: `password <REDACTED>` is not SQL any more
    assert not shapes["CREATE USER regress_user1 password <REDACTED>"].parsed
    assert cache.stats.text_hits > 0
