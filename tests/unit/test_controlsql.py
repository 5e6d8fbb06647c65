"""Statements that change the audit trail's set-up, recognised in statement texts as
pg_stat_statements and pg_stat_activity show them."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from collectors import controlsql, relations
from collectors.controlsql import FALLBACK_CHARS, control_statement
from collectors.relations import PARSE_CHARS


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("SET pgaudit.log = 'none'", "SET pgaudit.log = 'none'"),
        ("set pgaudit.log to none", "SET pgaudit.log = 'none'"),
        ("SET SESSION pgaudit.log = 'read'", "SET pgaudit.log = 'read'"),
        ("SET LOCAL pgaudit.log_relation = off", "SET LOCAL pgaudit.log_relation = 'off'"),
        ("SET pgaudit.role TO DEFAULT", "SET pgaudit.role TO DEFAULT"),
        ("RESET pgaudit.log", "RESET pgaudit.log"),
        ("SET pgaudit.log_level = debug5", "SET pgaudit.log_level = 'debug5'"),
        ("SET log_min_messages = 'panic'", "SET log_min_messages = 'panic'"),
        ("/* maintenance */ SET pgaudit.log = 'none'", "SET pgaudit.log = 'none'"),
        ("SELECT set_config('pgaudit.log', 'none', false)", "set_config: pgaudit.log = 'none'"),
        ("SELECT 1, pg_catalog.set_config('log_min_messages', 'fatal', true)", "set_config"),
        ("ALTER SYSTEM SET pgaudit.log = 'none'", "ALTER SYSTEM SET pgaudit.log = 'none'"),
        ("ALTER SYSTEM RESET pgaudit.role", "ALTER SYSTEM RESET pgaudit.role"),
        ("ALTER SYSTEM RESET ALL", "ALTER SYSTEM RESET ALL"),
        ("ALTER SYSTEM SET shared_preload_libraries = ''", "shared_preload_libraries"),
        ("ALTER SYSTEM SET log_directory = '/dev/null'", "log_directory"),
        ("ALTER ROLE app SET pgaudit.log = 'none'", "ALTER ROLE app SET pgaudit.log = 'none'"),
        ("ALTER USER app RESET pgaudit.log", "ALTER ROLE app RESET pgaudit.log"),
        ("ALTER ROLE ALL SET pgaudit.log TO 'none'", "ALTER ROLE ALL SET pgaudit.log"),
        ("ALTER ROLE app IN DATABASE crm SET log_min_messages = fatal", "IN DATABASE crm"),
        ("ALTER ROLE app RESET ALL", "ALTER ROLE app RESET ALL"),
        ("ALTER DATABASE crm SET pgaudit.log = 'none'", "ALTER DATABASE crm SET pgaudit.log"),
        ("ALTER DATABASE crm RESET ALL", "ALTER DATABASE crm RESET ALL"),
        ("DROP EXTENSION pgaudit", "DROP EXTENSION pgaudit"),
        ("DROP EXTENSION IF EXISTS hstore, pgaudit CASCADE", "DROP EXTENSION pgaudit"),
        ("DROP EXTENSION pg_stat_statements", "DROP EXTENSION pg_stat_statements"),
        ("SELECT pg_stat_statements_reset()", "pg_stat_statements reset"),
        ("SELECT public.pg_stat_statements_reset($1, $2, $3)", "pg_stat_statements reset"),
        ("SELECT pg_stat_reset()", "table statistics reset"),
        ("SELECT pg_stat_reset_single_table_counters($1)", "a table's statistics reset"),
        ("REVOKE SELECT ON crm.clients FROM auditor", "REVOKE ... FROM auditor"),
        ("REVOKE ALL ON ALL TABLES IN SCHEMA crm FROM bob, auditor", "REVOKE ... FROM auditor"),
        ("REVOKE SELECT ON crm.clients FROM AUDITOR", "REVOKE ... FROM auditor"),
        ("DROP OWNED BY auditor", "DROP OWNED BY auditor"),
        ("DROP ROLE IF EXISTS temp, auditor", "DROP ROLE auditor"),
        ("ALTER ROLE auditor RENAME TO nobody", "ALTER ROLE auditor RENAME"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET pgaudit.log = 'none' AS 'SELECT 1'",
            "a function's SET pgaudit.log = 'none'",
        ),
        ("DO $$BEGIN PERFORM set_config('pgaudit.log', 'none', false); END$$", "DO block"),
        ("DO $$BEGIN EXECUTE 'SET pgaudit.log = none'; END$$", "DO block: SET pgaudit.log"),
        ("SELECT 1; SET pgaudit.log = 'none'", "SET pgaudit.log = 'none'"),
        # spelt so that a search for "pgaudit" misses it
        ("SELECT set_config('pga' || 'udit.log', 'none', false)", "set_config: pgaudit.log"),
        ("SET U&\"pg\\0061udit.log\" = 'none'", "SET pgaudit.log = 'none'"),
        ("SET \"PGAUDIT.LOG\" = 'none'", "SET PGAUDIT.LOG = 'none'"),
        # texts that do not parse (cut by track_activity_query_size): the fallback
        ("SET pgaudit.log = 'no", "SET pgaudit.log (text not parsed)"),
        ("SELECT 1; SET log_min_messages = 'fat", "SET log_min_messages (text not parsed)"),
        ("ALTER SYSTEM SET pgaudit.log = 'no", "ALTER SYSTEM ... SET pgaudit.log"),
        ("SELECT pg_stat_statements_reset(1, 2", "pg_stat_statements_reset()"),
        ("REVOKE SELECT ON crm.clients, crm.x FROM auditor, ", "REVOKE ... FROM auditor"),
        ("DROP EXTENSION pgaudit CASCADE,", "DROP EXTENSION pgaudit"),
    ],
)
def test_control_statements(text: str, says: str) -> None:
    found = control_statement(text)
    assert found is not None and says in found, found
    assert "\n" not in found


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 'pgaudit.log'",
        "SELECT 'SET pgaudit.log = none'",
        "SELECT * FROM crm.clients WHERE note = 'pg_stat_statements_reset()'",
        "SET application_name = 'pgaudit.log'",
        "SET application_name = 'psql'",
        "SET search_path = crm, public",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION bob",
        "RESET ROLE",
        "RESET ALL",  # poolers run it: back to the configured values
        "DISCARD ALL",
        "SET log_statement = 'none'",  # does not touch pgaudit's records
        "SET client_min_messages = 'error'",
        "SHOW pgaudit.log",
        "SELECT current_setting('pgaudit.log')",
        "SELECT set_config('app.user_id', '42', false)",
        "SELECT set_config($1, $2, $3)",  # normalized: which setting is unknown
        "ALTER SYSTEM SET work_mem = '64MB'",
        "ALTER ROLE app SET search_path = crm",
        "ALTER DATABASE crm SET timezone = 'UTC'",
        "DROP EXTENSION hstore",
        "DROP TABLE pgaudit",
        "REVOKE SELECT ON crm.clients FROM bob",
        "REVOKE SELECT ON crm.clients FROM auditor_old",
        "GRANT SELECT ON crm.clients TO auditor",
        "DROP ROLE bob",
        "ALTER FUNCTION f() SET search_path = crm",
        "DO $$BEGIN RAISE NOTICE 'pgaudit.log is set'; END$$",
        "SELECT * FROM pg_stat_statements",
        "SELECT pg_stat_statements_info()",
        "-- SET pgaudit.log = 'none'\nSELECT 1",
        "SELECT * FROM crm.clients WHERE name = 'cut",
        "<insufficient privilege>",
        "",
    ],
)
def test_not_control_statements(text: str) -> None:
    assert control_statement(text) is None


def test_the_audit_role_is_a_parameter() -> None:
    assert control_statement("REVOKE SELECT ON t FROM auditor", audit_role="watcher") is None
    found = control_statement("REVOKE SELECT ON t FROM watcher", audit_role="watcher")
    assert found is not None and "watcher" in found
    cut = control_statement("REVOKE SELECT ON t FROM watcher, ", audit_role="watcher")
    assert cut is not None and "watcher" in cut


def test_descriptions_are_one_safe_line() -> None:
    found = control_statement("ALTER ROLE \"evil\x1b[2J\nrole\" SET pgaudit.log = 'none'")
    assert found is not None
    assert "\x1b" not in found and "\n" not in found and "\\x1b" in found


# Hostile texts: before the fix, a 114 KB DO block of this took 20 s of the event loop (the
# fallback rescanned the rest of the statement from every place one may start). Not timed here:
# the tests hold the bounds that keep the work small, whatever the size of the text.
HOSTILE_CODE = "BEGIN alter role x drop extension revoke from ( 'set   "


def _do_block(size: int, code: str = "") -> str:
    padding = HOSTILE_CODE * (size // len(HOSTILE_CODE))
    return f"DO $x$ BEGIN {code} PERFORM '{padding}'; END $x$"


class _Spy:
    """Records the length of each text `controlsql` hands to the fallback and to the parser."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fallback: list[int] = []
        self.parsed: list[int] = []
        fallback, parse = controlsql._fallback, relations.parser.parse_sql_json

        def spy_fallback(text: str, audit_role: str, at: str | None = None) -> str | None:
            self.fallback.append(len(text))
            return fallback(text, audit_role, at)

        def spy_parse(text: str) -> str:
            self.parsed.append(len(text))
            return parse(text)

        monkeypatch.setattr(controlsql, "_fallback", spy_fallback)
        monkeypatch.setattr(relations, "parser", SimpleNamespace(parse_sql_json=spy_parse))
        relations.parse_tree.cache_clear()


@pytest.mark.parametrize(
    ("text", "parsed", "says"),
    [
        (_do_block(200_000), False, None),  # too long to parse: the fallback reads its start
        (_do_block(60_000), True, None),  # parsed: the fallback reads the start of its code
        (_do_block(200_000, "EXECUTE 'ALTER ROLE x SET pgaudit.log = none';"), False, "ALTER ROLE"),
        (_do_block(60_000, "EXECUTE 'ALTER ROLE x SET pgaudit.log = none';"), True, "ALTER ROLE"),
        ("SELECT ( " + HOSTILE_CODE * 20_000, False, None),  # 1 MB that does not parse
        ("REVOKE " + "ALL FROM x, " * 90_000, False, None),
        ("SET pgaudit.log = 'none'; SELECT '" + "x" * 1_000_000, False, "SET pgaudit.log"),
    ],
    ids=["do-200k", "do-60k", "do-200k-alter", "do-60k-alter", "1m", "revoke-1m", "set-1m"],
)
def test_hostile_texts_are_read_within_bounds(
    monkeypatch: pytest.MonkeyPatch, text: str, parsed: bool, says: str | None
) -> None:
    spy = _Spy(monkeypatch)
    found = control_statement(text)
    assert (found is None) if says is None else (found is not None and says in found), found
    assert spy.fallback and max(spy.fallback) <= FALLBACK_CHARS
    assert spy.parsed == ([len(text)] if parsed else [])
    assert all(n < PARSE_CHARS for n in spy.parsed)


class _Searched:
    """A compiled pattern that adds up how many characters it is asked to search."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern, re.I)
        self.chars = 0

    def search(self, text: str, pos: int, endpos: int) -> re.Match[str] | None:
        self.chars += endpos - pos
        return self.pattern.search(text, pos, endpos)


@pytest.mark.parametrize(
    "text",
    [
        HOSTILE_CODE * 300,  # many starts in one statement: its rest is searched once
        (HOSTILE_CODE + ";") * 300,  # many statements: each searched once
        "alter role x " * 1_000 + "set pgaudit.log",
    ],
    ids=["one-statement", "statements", "found"],
)
def test_the_fallback_searches_each_statement_once(text: str) -> None:
    then = _Searched(r"\bSET\s+pgaudit\.\w+")
    first = controlsql._IN_CODE + controlsql._ALTER
    found = controlsql._within(text, first, then)  # type: ignore[arg-type]
    assert (found is not None) == text.endswith("pgaudit.log")
    assert then.chars <= len(text)  # not len(text) times the number of starts
