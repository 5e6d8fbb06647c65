"""The `tablewatch` command line (DESIGN.md, CLI contract)."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from collectors.prefix import BadPrefix, prefix_pattern
from core.engine import EngineConfig
from core.settings import ExpectedPrincipal, Settings, SettingsError, load_settings
from core.tables import TableName
from tablewatch.findings_text import print_findings
from tablewatch.follow import run_follow
from tablewatch.replay import EXIT_USAGE, ReplayOptions, run_replay

SAMPLE_LOG = Path(__file__).resolve().parent / "samples" / "pgaudit-sample.csv"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _table_arg(text: str) -> TableName:
    name, sep, rows = text.partition("=")
    count: int | None = None
    if sep:
        if not rows.strip().isdecimal() or len(rows) > 18:
            raise argparse.ArgumentTypeError(f"row count must be a whole number in {text!r}")
        count = int(rows)
    try:
        return TableName.parse(name, count)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _table_option(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument(
        "--table",
        action="append",
        type=_table_arg,
        default=[],
        metavar="SCHEMA.TABLE[=ROWS]",
        help=f"a watched table (repeatable; default: [[tables]] of the settings{more})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tablewatch",
        description="Who is reading your most sensitive PostgreSQL table, right now.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="settings file (default: ./settings.toml, ~/.config/tablewatch/settings.toml, "
        "/etc/tablewatch/settings.toml); TABLEWATCH_<SECTION>__<KEY> overrides it",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    replay = sub.add_parser(
        "replay",
        help="offline: audit logs -> findings (or access events) as JSON lines on stdout",
        description="Read PostgreSQL server logs (csvlog, jsonlog or stderr; .gz too), oldest "
        "first, and print the findings about the readers of the watched tables as JSON lines, "
        "event time as the clock (--events: the pgaudit records themselves).",
    )
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE")
    replay.add_argument(
        "--format",
        choices=("auto", "csvlog", "jsonlog", "stderr"),
        default="auto",
        help="log format (default: auto, from each file's first lines)",
    )
    replay.add_argument(
        "--log-line-prefix",
        metavar="P",
        default=None,
        help="the server's log_line_prefix, for stderr logs "
        "(default: settings, else '%%m [%%p] %%q%%u@%%d %%r %%a ')",
    )
    _table_option(replay, "; an unqualified name matches that table in any schema")
    replay.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="findings: load the learned habits (baselines.json) from DIR first and save them "
        "back after (default: start learning afresh, save nothing)",
    )
    out = replay.add_mutually_exclusive_group()
    out.add_argument("--events", action="store_true", help="print access events, not findings")
    out.add_argument(
        "--summary", action="store_true", help="print a human summary of who read the tables"
    )

    tail = sub.add_parser(
        "tail",
        help="follow the audit log of the settings live: access events as JSON lines",
        description="Follow [audit_log] path (a file or a glob, across rotation) and print the "
        "pgaudit records about the watched tables as they are written, as `replay --events` "
        "does. The position is kept in the state dir: the next run resumes where this one "
        "stopped.",
    )
    _table_option(tail)
    tail.add_argument(
        "--from-start",
        action="store_true",
        help="with no checkpoint yet, start at the beginning of the log, not its end",
    )

    demo = sub.add_parser(
        "demo",
        help="the dashboard on a simulated workload (no database needed)",
        description="A simulated workload writes real-format pgaudit csvlog into a temporary "
        "folder (normal readers, then an exfiltration that escalates); the real log tail reads "
        "it, the real engine scores it, and the dashboard shows it. Press a on the critical "
        "reader to page (recorded by the local sink).",
    )
    demo.add_argument(
        "--postgres",
        action="store_true",
        help="real SQL traffic on a private throwaway PostgreSQL 15 + pgaudit cluster instead",
    )
    demo.add_argument(
        "--text",
        action="store_true",
        help="no dashboard: print who read the sample audit trail shipped with tablewatch and "
        "what the engine found (also what happens when stdout is not a terminal)",
    )
    dashboard = sub.add_parser(
        "dashboard",
        help="the live terminal dashboard over the audit log of the settings, or attached to "
        "agents (--agent)",
        description="Follow [audit_log] path, rank the readers of the watched tables and show "
        "them live; page, mark expected or snooze from the keyboard (? for the keys).",
    )
    _table_option(dashboard)
    dashboard.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="attach to a running agent's API (http(s)://host:port; repeatable: one dashboard "
        "for several agents, each row saying which); token from [api] token or "
        "TABLEWATCH_API__TOKEN",
    )
    run = sub.add_parser(
        "run",
        help="the headless agent: audit log, detection, alert delivery, Prometheus /metrics, "
        "the API dashboards attach to",
        description="Follow [audit_log] path (resuming at its checkpoint), rank the readers of "
        "the watched tables, page through the configured sinks, serve /metrics on [metrics] "
        "listen and the agent API on [api] listen, until SIGTERM or SIGINT (then the "
        "position, habits and alerts are saved).",
    )
    _table_option(run)
    run.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines on stderr"
    )
    doctor = sub.add_parser(
        "doctor",
        help="checks the monitoring role, pgaudit's set-up and the log; says what to fix",
        description="Connect with [database] dsn and check the monitoring role's privileges, "
        "pgaudit's set-up for each watched table and the server log's destination and format, "
        "then whether this user can read [audit_log] path. Each problem is printed with the SQL "
        "or setting that fixes it. Exit 0: nothing wrong (warnings allowed); 1: something is.",
    )
    _table_option(doctor)
    alert = sub.add_parser(
        "alert",
        help="alert sinks: `alert test` sends a test alert through them",
        description="test: send one clearly marked test alert (severity info, then resolved) "
        "through each configured sink, wait for each one's answer (retrying as the outbox "
        "would) and report; exit 1 if any sink failed.",
    )
    alert.add_argument("action", choices=("test",))
    alert.add_argument("--sink", metavar="NAME", help="only this sink (default: every one)")
    alert.add_argument(
        "--wait",
        type=_seconds_arg,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for each sink, retries included (default: 60)",
    )
    return parser


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got {text!r}")
    return value


def _settings(path: Path | None) -> Settings:
    return load_settings(path)


class _Refused(Exception):
    """A command that cannot start; the message is its one line for stderr."""


def _tables(args: argparse.Namespace, settings: Settings) -> list[TableName]:
    tables: list[TableName] = args.table or settings.watched_tables()
    if not tables:
        raise _Refused("no watched table: give --table SCHEMA.TABLE or set [[tables]] in settings")
    return tables


def _prefix(prefix: str) -> str:
    try:
        prefix_pattern(prefix)
    except BadPrefix as exc:
        raise _Refused(f"bad log_line_prefix: {exc}") from None
    return prefix


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    tables = _tables(args, settings)
    opts = ReplayOptions(
        files=args.files,
        tables=tables,
        fmt=args.format,
        log_line_prefix=_prefix(args.log_line_prefix or settings.audit_log.log_line_prefix),
        events=args.events,
        summary=args.summary,
        engine=EngineConfig.from_settings(settings, tables),
        state_dir=args.state_dir,
    )
    return run_replay(opts, sys.stdout.buffer, sys.stderr)


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.audit_log.path:
        raise _Refused('[audit_log] path is "": there is no audit log to follow')
    tables = _tables(args, settings)
    _prefix(settings.audit_log.log_line_prefix)
    return run_follow(settings, tables, sys.stdout.buffer, sys.stderr, from_start=args.from_start)


def _terminal() -> bool:
    # Textual draws on stderr: redirected, the screen would go to a file and keys act blind
    return sys.stdin.isatty() and sys.stdout.isatty() and sys.stderr.isatty()


def _dashboard(args: argparse.Namespace, settings: Settings) -> int:
    if args.agent:
        if args.table:
            raise _Refused("--table with --agent: the agents watch the tables of their settings")
        if not _terminal():
            raise _Refused("the dashboard needs a terminal (stdin, stdout and stderr)")
        from tablewatch.dashboard import run_remote_dashboard

        return run_remote_dashboard(settings, args.agent)
    tables = _tables(args, settings)
    _prefix(settings.audit_log.log_line_prefix)
    if not _terminal():
        raise _Refused("the dashboard needs a terminal (stdin, stdout and stderr)")
    from tablewatch.dashboard import run_dashboard

    return run_dashboard(settings, tables)


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    tables = _tables(args, settings)
    from tablewatch.doctor import run_doctor

    return run_doctor(settings, tables)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.text or not _terminal():
        if not args.text:
            print(
                "tablewatch demo: not a terminal: printing the sample's findings", file=sys.stderr
            )
        return _demo_text()
    from tablewatch.dashboard import run_demo

    return run_demo(postgres=args.postgres)


def _demo_text() -> int:
    table = TableName("crm", "client_list", 2000)
    summary = ReplayOptions(files=[SAMPLE_LOG], tables=[table], summary=True)
    print(f"Replaying the sample audit trail {SAMPLE_LOG.name}\n")
    status = run_replay(summary, sys.stdout.buffer, sys.stderr)
    if status:
        return status
    backup = ExpectedPrincipal(user="backup", application_name="pg_dump", note="nightly backup")
    findings = ReplayOptions(
        files=[SAMPLE_LOG],
        tables=[table],
        engine=EngineConfig(tables=(table,), expected=(backup,)),
    )
    buffer = io.BytesIO()
    status = run_replay(findings, buffer, sys.stderr)
    print(
        "\nFindings (a reader's severity rising; backup/pg_dump is declared [[expected]]):\n",
        flush=True,
    )
    print_findings(buffer.getvalue(), sys.stdout)
    return status


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from tablewatch.agent import run_agent

    return run_agent(
        settings,
        _tables(args, settings),
        load=lambda: _settings(args.config),
        log_format=args.log_format,
    )


def _alert(args: argparse.Namespace, settings: Settings) -> int:
    from tablewatch.alerttest import run_alert_test

    return run_alert_test(settings, args.sink, sys.stdout, sys.stderr, wait=args.wait)


_COMMANDS = {
    "replay": _replay,
    "tail": _tail,
    "demo": _demo,
    "dashboard": _dashboard,
    "doctor": _doctor,
    "alert": _alert,
    "run": _run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tablewatch` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args.config)
    except SettingsError as exc:
        print(f"tablewatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    command = _COMMANDS.get(args.command)
    if command is None:
        print(f"tablewatch {args.command}: not built yet (see the open issues)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return command(args, settings)
    except _Refused as exc:
        print(f"tablewatch {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
