"""Statements that change the audit trail's set-up, recognised in a statement text.

pg_stat_statements and pg_stat_activity show what sessions ran, including what the audit log
may not: a superuser's `SET pgaudit.log = 'none'` is the last thing pgaudit writes for that
session. What counts (each mutes or ends pgaudit records, or blinds the statistics that
cross-check them):

- SET / RESET / set_config() of a `pgaudit.*` setting or of `log_min_messages` (raised to
  `fatal`, it drops pgaudit's LOG records); `log_statement` and friends do not touch pgaudit;
  `SET ROLE` and `SET SESSION AUTHORIZATION` change who is audited, not whether;
- the same settings made persistent: ALTER SYSTEM (plus the settings that move or stop the
  server log, and `shared_preload_libraries`, which unloads pgaudit at the next restart),
  ALTER ROLE|USER ... SET, ALTER DATABASE ... SET, and their RESET ALL;
- DROP EXTENSION pgaudit (or pg_stat_statements);
- pg_stat_statements_reset(), pg_stat_reset(), pg_stat_reset_single_table_counters();
- REVOKE ... FROM the audit role, DROP OWNED BY / DROP ROLE / renaming the audit role.

A session's RESET ALL (poolers run it between clients) only returns to the configured values,
so it is not one. The parse tree decides when the text parses; a regular expression over the
text is the fallback for one that does not (cut by track_activity_query_size). A normalized
`set_config($1, $2, $3)` (pg_stat_statements replaces constants) cannot say which setting it
changed and is not reported: row-level-security applications call it all day.

The texts are untrusted and judged inside the event loop, so the work is bounded: a text of
PARSE_CHARS characters or more is not parsed (the sources cut longer ones there), and the
fallback reads only the first FALLBACK_CHARS characters of a text (or of a DO block's code),
with regular expressions that run in time linear in it (each finds where a statement starts,
then what it must hold before the next semicolon, once per statement). A change written past
those first characters of such a text is not seen.
"""

from __future__ import annotations

import re
from typing import Any, Final

from collectors.relations import PARSE_CHARS, parse_tree
from core.safetext import safe

FALLBACK_CHARS: Final = 16_384
"""How much of a text (or of a DO block's code) the regular-expression fallback reads."""

SESSION_SETTINGS: Final = ("log_min_messages",)
"""Settings besides pgaudit.* whose change can mute pgaudit's records."""
SYSTEM_SETTINGS: Final = (
    "log_min_messages",
    "shared_preload_libraries",
    "logging_collector",
    "log_destination",
    "log_directory",
    "log_filename",
    "log_line_prefix",
)
"""Settings besides pgaudit.* whose persistent change blinds the audit trail."""
RESETS: Final = {
    "pg_stat_statements_reset": "pg_stat_statements reset (per-role statement counts lost)",
    "pg_stat_reset": "table statistics reset (read counts lost)",
    "pg_stat_reset_single_table_counters": "a table's statistics reset (read counts lost)",
}
WATCHED_EXTENSIONS: Final = ("pgaudit", "pg_stat_statements")
_MAX_DEPTH: Final = 200


def _audited(name: str, system: bool = False) -> bool:
    name = name.lower()
    return name.startswith("pgaudit.") or name in (SYSTEM_SETTINGS if system else SESSION_SETTINGS)


def _one(node: Any) -> tuple[str, Any]:
    if isinstance(node, dict) and len(node) == 1:
        kind, body = next(iter(node.items()))
        return kind, body if isinstance(body, dict) else {}
    return "", {}


def _constant(node: Any, depth: int = 0) -> str | None:
    """The text of a constant (`'none'`, `1`, `on`, `'pga' || 'udit.log'`), None for anything
    else (a parameter, a column, a function's result)."""
    kind, body = _one(node)
    if depth > _MAX_DEPTH:
        return None
    if kind == "TypeCast":
        return _constant(body.get("arg"), depth + 1)
    if kind == "A_Expr" and [_one(n)[1].get("sval") for n in body.get("name", [])] == ["||"]:
        left, right = (
            _constant(body.get("lexpr"), depth + 1),
            _constant(body.get("rexpr"), depth + 1),
        )
        return None if left is None or right is None else left + right
    if kind != "A_Const":
        return None
    for field in ("sval", "ival", "fval", "boolval", "bsval"):
        value = body.get(field)
        if isinstance(value, dict):
            inner = next(iter(value.values()), "")
            return str(inner).lower() if field == "boolval" else str(inner)
    return None


def _setting(stmt: dict[str, Any]) -> str:
    """A VariableSetStmt as SQL: `SET name = 'value'`, `SET name TO DEFAULT`, `RESET name`."""
    name = str(stmt.get("name", ""))
    kind = stmt.get("kind", "")
    if kind == "VAR_RESET_ALL":
        return "RESET ALL"
    if kind == "VAR_RESET":
        return f"RESET {name}"
    verb = "SET LOCAL" if stmt.get("is_local") else "SET"
    if kind == "VAR_SET_DEFAULT":
        return f"{verb} {name} TO DEFAULT"
    values = [_constant(a) for a in stmt.get("args", [])]
    shown = ", ".join("?" if v is None else f"'{v}'" for v in values)
    return f"{verb} {name} = {shown}" if shown else f"{verb} {name}"


def _set_stmt(stmt: Any, where: str = "") -> str | None:
    """A VariableSetStmt (`where`: the ALTER ... it is part of, "" in a session) that touches
    the audit settings, described; a persistent RESET ALL may drop pgaudit's settings too."""
    if not isinstance(stmt, dict):
        return None
    if stmt.get("kind") == "VAR_RESET_ALL":
        return f"{where} RESET ALL (pgaudit's settings included)" if where else None
    if not _audited(str(stmt.get("name", "")), system=where == "ALTER SYSTEM"):
        return None
    return f"{where} {_setting(stmt)}" if where else _setting(stmt)


def _role(node: Any) -> str:
    """A RoleSpec's name, wrapped (`{"RoleSpec": {...}}`, in lists) or bare (a single field);
    CURRENT_USER and friends by their keyword."""
    spec = _one(node)[1] if isinstance(node, dict) and "RoleSpec" in node else node
    if not isinstance(spec, dict):
        return ""
    if "rolename" in spec:
        return str(spec["rolename"])
    return str(spec.get("roletype", "")).removeprefix("ROLESPEC_")


def _string_list(nodes: Any) -> list[str]:
    out = []
    for node in nodes if isinstance(nodes, list) else []:
        kind, body = _one(node)
        if kind == "String":
            out.append(str(body.get("sval", "")))
    return out


def _func_name(call: dict[str, Any]) -> str:
    names = _string_list(call.get("funcname", []))
    return names[-1].lower() if names else ""


def _calls(node: Any, out: list[str], depth: int = 0) -> None:
    """The function calls anywhere under a node that reset or set the audit trail, and the
    SET clauses of functions (each call of a function `SET pgaudit.log = 'none'` is muted)."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, list):
        for item in node:
            _calls(item, out, depth + 1)
        return
    if not isinstance(node, dict):
        return
    nested = node.get("VariableSetStmt")  # CREATE|ALTER FUNCTION ... SET pgaudit.log = ...
    if isinstance(nested, dict) and (said := _set_stmt(nested)):
        out.append(f"a function's {said}")
    call = node.get("FuncCall")
    if isinstance(call, dict):
        name = _func_name(call)
        if name in RESETS:
            out.append(f"{name}(): {RESETS[name]}")
        elif name == "set_config":
            args = call.get("args", [])
            setting = _constant(args[0]) if args else None
            if setting is not None and _audited(setting):
                value = _constant(args[1]) if len(args) > 1 else None
                shown = "?" if value is None else f"'{value}'"
                out.append(f"set_config: {setting.lower()} = {shown}")
    for value in node.values():
        if isinstance(value, dict | list):
            _calls(value, out, depth + 1)


def _statement(kind: str, body: dict[str, Any], audit_role: str) -> str | None:
    """One parsed statement's change to the audit set-up, or None."""
    role = audit_role.lower()
    if kind == "VariableSetStmt":
        return _set_stmt(body)
    if kind == "AlterSystemStmt":
        return _set_stmt(body.get("setstmt"), "ALTER SYSTEM")
    if kind == "AlterRoleSetStmt":
        who = _role(body.get("role")) or "ALL"
        where = f"ALTER ROLE {who}"
        if "database" in body:
            where += f" IN DATABASE {body['database']}"
        return _set_stmt(body.get("setstmt"), where)
    if kind == "AlterDatabaseSetStmt":
        return _set_stmt(body.get("setstmt"), f"ALTER DATABASE {body.get('dbname', '')}")
    if kind == "DropStmt" and body.get("removeType") == "OBJECT_EXTENSION":
        gone = [n for n in _string_list(body.get("objects")) if n.lower() in WATCHED_EXTENSIONS]
        return f"DROP EXTENSION {', '.join(gone)}" if gone else None
    if kind == "GrantStmt" and not body.get("is_grant"):
        grantees = [_role(g).lower() for g in body.get("grantees", [])]
        return f"REVOKE ... FROM {audit_role} (the audit role)" if role in grantees else None
    if kind in ("DropOwnedStmt", "DropRoleStmt"):
        dropped = [_role(r).lower() for r in body.get("roles", [])]
        verb = "DROP OWNED BY" if kind == "DropOwnedStmt" else "DROP ROLE"
        return f"{verb} {audit_role} (the audit role)" if role in dropped else None
    if kind == "RenameStmt" and body.get("renameType") == "OBJECT_ROLE":
        renamed = str(body.get("subname", "")).lower() == role
        return f"ALTER ROLE {audit_role} RENAME (the audit role)" if renamed else None
    if kind == "DoStmt":
        in_code = _fallback(_do_code(body)[:FALLBACK_CHARS], audit_role, _IN_CODE)
        return f"DO block: {in_code}" if in_code else None
    calls: list[str] = []
    _calls(body, calls)
    return calls[0] if calls else None


def _do_code(body: dict[str, Any]) -> str:
    """The code of a DO block (a string: PL/pgSQL is not parsed here, only searched)."""
    code = []
    for item in body.get("args", []):
        _, elem = _one(item)
        if elem.get("defname") == "as":
            code.append(str(_one(elem.get("arg"))[1].get("sval", "")))
    return "\n".join(code)


_AT_STATEMENT: Final = r"(?:^|;)\s*"
"""Where a statement starts in a text that does not parse."""
_IN_CODE: Final = r"(?:^|[;'(]|\b(?:BEGIN|THEN|ELSE|LOOP|EXECUTE|PERFORM)\b)\s*"
"""Where a statement starts in a DO block's code, also inside an EXECUTE's string."""
_DO: Final = re.compile(r"\s*DO\b", re.I)
_SET = r"(?:SET\s+(?:SESSION\s+|LOCAL\s+)?|RESET\s+)(pgaudit\.\w+|log_min_messages)\b"
# A statement found by its first words (after `at`) and by what must follow them before the
# next semicolon is searched in parts (`_within`), never as one `FIRST[^;]*?THEN` pattern: that
# rescans the rest of the statement from every place one may start, in quadratic time.
_ALTER: Final = r"ALTER\s+(SYSTEM|ROLE|USER|DATABASE)\b"
_ALTER_SETS: Final = re.compile(r"\b(?:SET|RESET)\s+(pgaudit\.\w+|log_min_messages|ALL\b)", re.I)
_DROP_EXTENSION: Final = r"DROP\s+EXTENSION\b"
_DROPPED: Final = re.compile(r"\b(pgaudit|pg_stat_statements)\b", re.I)
_REVOKE: Final = r"REVOKE\b"
_FROM: Final = re.compile(r"\bFROM\b", re.I)
_SET_CONFIG = re.compile(r"\bset_config\s*\(\s*'(pgaudit\.\w+|log_min_messages)'", re.I)
_RESET_CALL = re.compile(
    r"\b(pg_stat_statements_reset|pg_stat_reset_single_table_counters|pg_stat_reset)\s*\(",
    re.I,
)
_MAYBE = re.compile(
    r"pgaudit|log_|logging|preload|reset|revoke|drop|alter|set_config|u&", re.IGNORECASE
)
"""A word every control statement has (U&: a name spelt with escapes): the others are not
parsed (most statements, and parsing is most of the cost)."""
_COMMENTS = re.compile(r"/\*.*?(?:\*/|$)|--[^\n]*", re.DOTALL)


def _within(text: str, first: str, *then: re.Pattern[str]) -> list[re.Match[str]] | None:
    """The first statement in `text` that `first` finds (where a statement starts, then its
    first words) and that holds each of `then` in turn before the next semicolon: the matches.

    Linear in the text: `first` is searched once over it, and the rest of each statement once,
    from its first start only (a later start in the same statement has less of it left).

    >>> [m.group(1) for m in _within("ALTER ROLE a; ALTER ROLE b SET pgaudit.log = 'none'",
    ...                               _AT_STATEMENT + _ALTER, _ALTER_SETS)]
    ['ROLE', 'pgaudit.log']
    """
    starts = re.compile(first, re.I)
    pos = 0
    while (start := starts.search(text, pos)) is not None:
        end = text.find(";", start.end())
        end = len(text) if end < 0 else end
        found, at = [start], start.end()
        for pattern in then:
            match = pattern.search(text, at, end)
            if match is None:
                break
            found.append(match)
            at = match.end()
        else:
            return found
        pos = end  # the next statement, from its semicolon (where `first` may start)
        if pos == len(text):
            return None
    return None


def _fallback(text: str, audit_role: str, at: str | None = None) -> str | None:
    """The regular-expression reading of a text that does not parse: statements recognised
    where a statement starts (`at`; by default at the start or after a semicolon, and also where
    one may start in a DO block's code when the text is one), function calls anywhere.

    Callers pass at most FALLBACK_CHARS characters; every search is linear in them."""
    text = _COMMENTS.sub(" ", text)
    if at is None:
        at = _IN_CODE if _DO.match(text) else _AT_STATEMENT
    if match := re.search(at + _SET, text, re.I):
        return f"SET {match.group(1).lower()}"
    if match := _SET_CONFIG.search(text):
        return f"set_config: {match.group(1).lower()}"
    if found := _within(text, at + _ALTER, _ALTER_SETS):
        return f"ALTER {found[0].group(1).upper()} ... SET {found[1].group(1).lower()}"
    if found := _within(text, at + _DROP_EXTENSION, _DROPPED):
        return f"DROP EXTENSION {found[1].group(1).lower()}"
    if match := _RESET_CALL.search(text):
        name = match.group(1).lower()
        return f"{name}(): {RESETS[name]}"
    role = re.compile(rf"(?<![\w$]){re.escape(audit_role)}(?![\w$])", re.I)
    if _within(text, at + _REVOKE, _FROM, role):
        return f"REVOKE ... FROM {audit_role} (the audit role)"
    return None


def control_statement(text: str, audit_role: str = "auditor") -> str | None:
    """A one-line description of how `text` changes the audit trail's set-up, or None.

    A text shorter than PARSE_CHARS characters is parsed; a longer one (cut there by the
    sources, or not), like one that does not parse, is read by the regular-expression fallback
    in its first FALLBACK_CHARS characters only: the work per text is bounded, whatever its
    size.

    >>> control_statement("SET pgaudit.log = 'none'")
    "SET pgaudit.log = 'none'"
    >>> control_statement("SELECT 'pgaudit.log'") is None
    True
    """
    long = len(text) >= PARSE_CHARS
    if not _MAYBE.search(text[:FALLBACK_CHARS] if long else text):
        return None
    stmts = None if long else parse_tree(text)
    if stmts is None:
        found = _fallback(text[:FALLBACK_CHARS], audit_role)
        return safe(f"{found} (text not parsed)", 300) if found else None
    said = []
    for stmt in stmts:
        kind, body = _one(stmt)
        found = _statement(kind, body, audit_role)
        if found and found not in said:
            said.append(found)
    return safe("; ".join(said), 300) if said else None
