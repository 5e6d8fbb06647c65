"""A short fuzzing run of every parser of untrusted input (tests/fuzzkit.py says what each
promises): random bytes, and real-shaped inputs (the seeds) with random edits made of the tokens
that matter to these parsers: quotes, commas, newlines, the markers the framers look for, digits
that `int()` refuses, invalid UTF-8. Derandomized, so the suite is repeatable; the coverage-guided
run of at least 30 CPU-minutes a target is bench/fuzz_bench.py (atheris).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzzkit
from tests.unit.pglog import audit_message, csvlog

TOKENS = (
    b'"',
    b'""',
    b",",
    b"\n",
    b"\r",
    b"\r\n",
    b"\t",
    b"\n\t",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xe2\x80\xa8",
    b"AUDIT: ",
    b',"AUDIT: ',
    b'"message":"AUDIT: ',
    b"42501",
    b',42501,"',
    b'"state_code":"42501"',
    b"2026-11-29 03:41:04.994 UTC,",
    b"LOG:  ",
    b"ERROR:  ",
    b"STATEMENT:  ",
    b"<none>",
    b"<not logged>",
    b"OBJECT",
    b"SESSION",
    b"\xc2\xb2",  # superscript two: str.isdigit() says yes, int() says no
    b"\xd9\xa3",  # Arabic-Indic three: isdecimal, and int() takes it
    b"9" * 5000,  # past int()'s 4,300 digits
    b"[",
    b"]",
    b"{",
    b"}",
    b"=",
    b"[[tables]]\n",
    b"[api]\n",
    b'"\\u0000"',
    b"1e400",
    b"-1",
    b"null",
)

_edit = st.tuples(
    st.floats(0, 1),
    st.sampled_from(("insert", "replace", "delete", "repeat")),
    st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=8)),
)


def _mutated(seed: bytes, edits: list[tuple[float, str, bytes]]) -> bytes:
    data = bytearray(seed)
    for where, op, token in edits:
        at = int(where * len(data))
        if op == "insert":
            data[at:at] = token
        elif op == "replace":
            data[at : at + len(token)] = token
        elif op == "delete":
            del data[at : at + len(token) * 4]
        else:
            data[at:at] = data[at : at + 64] * 3
    return bytes(data)


def _inputs(name: str) -> st.SearchStrategy[bytes]:
    seeded = st.builds(
        _mutated, st.sampled_from(fuzzkit.seeds(name)), st.lists(_edit, min_size=1, max_size=6)
    )
    return st.one_of(st.binary(max_size=512), seeded, seeded)


FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize(
    "name", ["csvlog", "jsonlog", "stderr", "pgaudit", "settings", "statement"]
)
def test_a_parser_holds_its_promises_on_any_input(name: str) -> None:
    check = fuzzkit.target(name)

    @FUZZ
    @given(_inputs(name))
    def run(data: bytes) -> None:
        check(data)

    run()


@pytest.fixture
def api() -> Iterator[fuzzkit.ApiTarget]:
    target = fuzzkit.ApiTarget()
    try:
        yield target
    finally:
        target.close()


def test_the_api_answers_any_body_with_a_documented_status(api: fuzzkit.ApiTarget) -> None:
    @settings(FUZZ, max_examples=150)
    @given(_inputs("api"))
    def run(data: bytes) -> None:
        api(data)

    run()


@pytest.mark.parametrize("name", fuzzkit.TARGETS)
def test_every_seed_is_accepted_as_it_is(name: str) -> None:
    """The seeds themselves are good input: the checks hold on them before any edit."""
    check = fuzzkit.target(name)
    try:
        for seed in fuzzkit.seeds(name):
            check(seed)
    finally:
        if isinstance(check, fuzzkit.ApiTarget):
            check.close()


FOUND = [
    # jsonlog: bytes that are not UTF-8 inside a string (a SQL_ASCII database passes a client's
    # bytes through) made msgspec raise UnicodeDecodeError: the tail would have died on it
    (
        "jsonlog",
        b'{"timestamp":"2026-11-29 03:41:04.994 UTC","user":"r\x80","pid":1,'
        b'"message":"AUDIT: SESSION,1,1,READ,SELECT,TABLE,t,SELECT 1,<none>"}\n',
    ),
    # the API: the same in a request body was a 500
    (
        "api",
        fuzzkit.api_input(0, 0, b'{"user": "\x80", "operator": "a"}'),
    ),
    # the API: a 404's reason echoed the path with its carriage return
    ("api", b'v\n{\rce"}'),
    # pgaudit: a quoted audit type was accepted alone and refused in a batch
    ("pgaudit", b'"OBJECT",4,1,READ,SELECT,TABLE,t,"SELECT 1",<none>'),
    # csvlog: a damaged record (quotes in unquoted fields) was an event for replay's fast path
    # and malformed for the tail
    (
        "csvlog",
        b'2026-11-29 03:41:04.994 UTC,\xff\xffder","postgres",7730,"127.0.0.1:53552",6b0b9ed0.1e32'
        b',1,"EXECUTE",2026-11-29 03:41:04 UTC,3/14,0,LOG,00000,"AUDIT: OBJECT,53,1,READ,SELECT,'
        b'TABLE,public.account,""SELECT *\n  FROM account"",<none>,3",,,,,,,,,"psql",'
        b'"client backend",,0\n',
    ),
    (
        "csvlog",
        b'2026-11-29 03:41:04.994 UTC,"reader","postgres",7730,"127.0.0.1:53552",6b0"user": "b9e'
        b'd0.1e32,1,"EXECUTE",2026-11-29 03:41:04 UTC,3/14,0,LOG,00000,"AUDIT: SESSION,26,2,WRITE,'
        b'INSERT,TABLE,public.test2,""WITH CTE AS\n(\n\tINSERT INTO test3 cte"",<none>,1",,,,,,,,,n'
        b'psql","client backend",,0\n',
    ),
]

_AUDIT = b'"AUDIT: SESSION,1,1,READ,SELECT,TABLE,t,SELECT 1,<none>"'
FOUND += [
    # str.isdigit() takes "\u00b2" (superscript two), int() does not: a pid or a second of it
    # raised ValueError out of the parser
    (
        "csvlog",
        b'2026-11-29 03:41:04.994 UTC,"u","d",77\xc2\xb2,"[local]",6b0b9ed0.1e32,1,"SELECT",'
        b"2026-11-29 03:41:04 UTC,3/14,0,LOG,00000,"
        + _AUDIT
        + b',,,,,,,,,"psql","client backend",,0\n',
    ),
    (
        "jsonlog",
        b'{"timestamp":"2026-11-29 03:41:0\xc2\xb2.994 UTC","pid":1,"message":' + _AUDIT + b"}\n",
    ),
    # a statement id of 5,000 digits: past int()'s limit (ValueError)
    ("pgaudit", b"OBJECT," + b"9" * 5000 + b",1,READ,SELECT,TABLE,t,SELECT 1,<none>"),
    (
        "stderr",
        b"2026-11-29 03:41:04.994 UTC [" + b"7" * 5000 + b"] u@d [local] psql LOG:  "
        b"AUDIT: SESSION,1,1,READ,SELECT,TABLE,t,SELECT 1,<none>\n",
    ),
]


FOUND += [
    # settings: a long value, in the file or the environment, was echoed whole in the error; a
    # variable's name with a control character was printed raw
    ("settings", b'[audit_log]\npoll_interval = "' + b"x" * 3000 + b'"\n'),
    ("settings", b'[[tables]]\nname = "t"\n\x00DATABASE__POLL_INTERVAL=' + b"y" * 3000),
    ("settings", b"[" + b"k" * 3000 + b"]\n"),
    ("settings", b"\x00\x1b]0;pwned\x07=1"),
]


FOUND += [
    # csvlog: after a damaged record, the framer looked for the next record start past the
    # record's end, where the tail may not have read yet: the log in pieces framed differently
    (
        "csvlog",
        b'2026-112026-11-29 03:41:04.994 UTC,"reader","'
        b'postgres",7730,"127.0.0.1:dit_log]\nd0.1e32,1,'
        b'"EXECUTErg 1,""hE\x05\x00\x00""""""",3",,,,,,,,,"psql"'
        b',F"client backend",,\x91\n2026-11-29 :\x00\x00\x00\x00\x00\x00\x00\x05TC,'
        b'"reader","postgres",7730,"127.0.0.1:53552",6b'
        b'0b9ed0.1e32,1,"EXECUTE",2026-11-29 03:41:04 U'
        b'TC,3/14,0,LOG,00000,"AUDIT: OBJECT,1,1,READ,S'
        b'ELECT\n2026-11-29 03:41:04.994 UTC,""""x"""",.'
        b'.. */ FROM crm.client_lis\x8c\xdd\xdd\xd3\xdd\xdd\xce\xda""""Org.1:53'
        b'552",6b0b9ed0.1e32,1,"EXECUTE",2026-11-29 03:'
        b'41:04 UTC,3/14,0,LOG,00000,"AUDIT: OBJECT,1,1'
        b',READ,SELECT\n2026-11-29 03:41:04.994 UTC,"\n 2'
        b',5""reader","postgres",7730,"127.0.0.1:53552"'
        b',6b0b9ed0.1e32,1,"EXECUTE",2026-11-\xcb9 03:41:0'
        b'4 UTC,3/14,0,LOG,00000,"AUDIT: SESSION,13,2,W'
        b'RI]E,INSERT,TABLEp (,S1, \'a\')"",<none>null,1"'
        b',,,,,,,,,"psql","clieackend",,0\n',
    ),
]


FOUND += [
    # csvlog: the last record, multi-line, whole but for its final newline, was cut at its second
    # line when that line looks like the start of a record (a statement can make it so)
    (
        "csvlog",
        csvlog(audit_message('SELECT 1 /* "\n2026-11-29 03:41:04.994 UTC,"x",... */ FROM crm.t'))[
            :-1
        ],
    ),
]


FOUND += [
    # statement: a number literal past int()'s 4,300 digits raised ValueError out of the engine
    # (the agent would have re-read and died on the same batch, blind)
    ("statement", b"SELECT * FROM crm.client_list WHERE id = " + b"9" * 5000),
    ("statement", b"SELECT * FROM crm.client_list LIMIT " + b"9" * 5000),
    ("statement", b"SELECT * FROM crm.client_list WHERE id = '" + b"9" * 5000 + b"'"),
    ("statement", b"SELECT * FROM crm.client_list WHERE id = $" + b"1" * 5000),
    # settings: an unknown variable's long name echoed whole; a complex value that is not JSON
    # escaped as pydantic's own error (a traceback)
    ("settings", b"\x00" + b"X" * 2000 + b"=1"),
    ("settings", b'[[tables]]\nname = "t"\n\x00TABLES=notjson'),
    # api: a path over aiohttp's 8,190-byte request line was refused by its HTTP parser before
    # any route, as a text answer on several lines echoing the path (and a traceback on stderr)
    ("api", fuzzkit.api_input(1, 0, b"{}", b"x" * 9000)),
    ("api", fuzzkit.api_input(5, 0, b"{}", b"%1b" * 3000)),
]


@pytest.mark.parametrize(
    ("name", "data"), FOUND, ids=[f"{n}-{i}" for i, (n, _) in enumerate(FOUND)]
)
def test_what_the_fuzzer_found_stays_mended(name: str, data: bytes) -> None:
    check = fuzzkit.target(name)
    try:
        check(data)
    finally:
        if isinstance(check, fuzzkit.ApiTarget):
            check.close()
