"""A private, throwaway PostgreSQL 15 + pgaudit cluster, for the test suite and the demo.

Usage::

    from tablewatch.pgcluster import PgCluster, available

    with PgCluster(settings={"pgaudit.log_rows": "on"}) as pg:
        pg.psql("CREATE TABLE t (id int); GRANT SELECT ON t TO auditor")
        pg.psql("SELECT * FROM t", app="my-app")
        text = pg.wait_for_log("csvlog", lambda s: "AUDIT: OBJECT," in s)

The cluster lives in a fresh directory under ``/tmp`` (``data/``, ``log/``, ``sock/``), listens on
a free TCP port on 127.0.0.1 only, trusts every local and loopback connection, and logs to
``log/postgresql.log`` (stderr), ``log/postgresql.csv`` (csvlog) and ``log/postgresql.json``
(jsonlog) with ``log_line_prefix = '%m [%p] %q%u@%d %r %a '`` in UTC. pgaudit is preloaded with
object audit through the NOLOGIN role ``auditor`` (``pgaudit.log = 'none'`` by default, so only
relations granted to ``auditor`` are audited).

PostgreSQL refuses to run as root: when this process is root, the server-side programs (initdb,
pg_ctl) run as the ``postgres`` OS user through ``runuser`` and the directory is handed to it.
Clients (psql) run as the current user; root can read the log files whatever their mode.

Only the standard library is used, so the module can be imported by any test, by ``bench/`` and
by ``tablewatch demo --postgres`` (tablewatch.pgdemo) without pulling in the rest of the package.
The pytest helper ``require_postgres`` lives with the tests (tests/pgcluster.py).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

__all__ = [
    "BIN_DIR",
    "DEFAULT_SETTINGS",
    "INSTALL_HINT",
    "LOG_FORMATS",
    "SERVER_OS_USER",
    "PgCluster",
    "available",
    "pgaudit_lib",
    "quote_literal",
]

#: Where Debian's postgresql-15 package installs the server programs.
BIN_DIR = Path("/usr/lib/postgresql/15/bin")
#: What to install when something is missing (Debian and Ubuntu, with the PGDG repository).
INSTALL_HINT = "apt-get install postgresql-15 postgresql-15-pgaudit"
#: The OS user that runs the server when this process is root.
SERVER_OS_USER = "postgres"
#: The log destinations (as named in ``current_logfiles``) the cluster writes by default.
LOG_FORMATS = ("stderr", "csvlog", "jsonlog")

#: postgresql.conf settings written for every cluster; ``PgCluster(settings=...)`` overrides them.
#: ``log_directory``, ``port``, ``listen_addresses`` and ``unix_socket_directories`` are
#: filled in per cluster.
DEFAULT_SETTINGS: dict[str, str] = {
    "shared_preload_libraries": "pgaudit",
    "logging_collector": "on",
    "log_destination": "stderr,csvlog,jsonlog",
    "log_filename": "postgresql.log",
    "log_file_mode": "0644",
    "log_rotation_age": "0",
    "log_rotation_size": "0",
    "log_line_prefix": "%m [%p] %q%u@%d %r %a ",
    "log_timezone": "UTC",
    "timezone": "UTC",
    "lc_messages": "C",
    "pgaudit.role": "auditor",
    "pgaudit.log": "none",
    "pgaudit.log_parameter": "on",
    "pgaudit.log_relation": "on",
    "pgaudit.log_statement_once": "off",
    "pgaudit.log_rows": "off",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "shared_buffers": "32MB",
    "max_connections": "50",
}

_GUC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
# Client-side libpq variables that would silently change where/how psql connects.
_PG_ENV_VARS = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGTARGETSESSIONATTRS",
    "PGCLIENTENCODING",
    "PGDATA",
    "PGTZ",
    "PGDATESTYLE",
    "PSQLRC",
    "PSQL_HISTORY",
    "PGCONNECT_TIMEOUT",
)


def pgaudit_lib(bin_dir: Path = BIN_DIR) -> Path:
    """The pgaudit shared library of the installation whose programs are in ``bin_dir``
    (its ``pkglibdir``: ``/usr/lib/postgresql/15/lib`` next to Debian's ``bin``)."""
    return bin_dir.parent / "lib" / "pgaudit.so"


def available(bin_dir: Path = BIN_DIR) -> str | None:
    """Return None when a cluster can be started here, else one line saying what is missing and
    how to install it."""
    missing = [p for p in ("initdb", "pg_ctl", "psql") if not (bin_dir / p).is_file()]
    if missing:
        return (
            f"PostgreSQL 15 server binaries not found in {bin_dir} (no {', '.join(missing)}): "
            f"{INSTALL_HINT}"
        )
    lib = pgaudit_lib(bin_dir)
    if not lib.is_file():
        return f"pgaudit not found ({lib}): apt-get install postgresql-15-pgaudit"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_OS_USER)
        except KeyError:
            return (
                f"running as root and there is no {SERVER_OS_USER!r} OS user to run the server: "
                f"{INSTALL_HINT} (creates it), or run as another user"
            )
        if shutil.which("runuser") is None:
            return "running as root and runuser(1) is not available: apt-get install util-linux"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def quote_literal(value: str) -> str:
    """Quote ``value`` as a single-quoted SQL / postgresql.conf string literal."""
    return "'" + value.replace("'", "''") + "'"


def _check_guc_name(name: str) -> str:
    if not _GUC_NAME.match(name):
        raise ValueError(f"not a valid setting name: {name!r}")
    return name


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


class PgCluster:
    """A private PostgreSQL 15 cluster with pgaudit, in its own temporary directory.

    ``settings`` are postgresql.conf settings (name -> value, values as PostgreSQL would accept
    them in a quoted string) that override :data:`DEFAULT_SETTINGS`; ``bin_dir`` holds the
    server programs (initdb, pg_ctl, psql) of PostgreSQL 15. Nothing happens until
    :meth:`start`; :meth:`stop` shuts the server down and removes the whole directory. The object
    is a context manager (start on enter, stop on exit).
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        settings: Mapping[str, str] | None = None,
        *,
        start_timeout: float = 30.0,
        bin_dir: Path = BIN_DIR,
    ) -> None:
        self.settings: dict[str, str] = dict(DEFAULT_SETTINGS)
        for name, value in (settings or {}).items():
            self.settings[_check_guc_name(name)] = value
        self.start_timeout = start_timeout
        self.bin_dir = bin_dir
        self.port: int = 0
        self.base: Path | None = None
        self._running = False
        self._as_root = os.geteuid() == 0

    # -- paths ------------------------------------------------------------------------------

    def _base(self) -> Path:
        if self.base is None:
            raise RuntimeError("cluster not started")
        return self.base

    @property
    def datadir(self) -> Path:
        """The data directory (``PGDATA``)."""
        return self._base() / "data"

    @property
    def log_dir(self) -> Path:
        """The absolute ``log_directory`` holding postgresql.log / .csv / .json."""
        return self._base() / "log"

    @property
    def socket_dir(self) -> Path:
        """The ``unix_socket_directories`` entry (the only one)."""
        return self._base() / "sock"

    @property
    def server_output(self) -> Path:
        """pg_ctl's ``-l`` file: what the server printed before the logging collector took over.

        Start-up WARNINGs land here only, e.g. an invalid ``pgaudit.log`` value in
        postgresql.conf, which pgaudit replaces by its default instead of refusing to start.
        """
        return self._base() / "pg_ctl.log"

    @property
    def running(self) -> bool:
        return self._running

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> PgCluster:
        """initdb, configure, start (pg_ctl -w) and create the ``auditor`` role; returns self.

        Raises RuntimeError, with pg_ctl's output and the tail of the server log, when the
        server does not come up; the temporary directory is removed in that case.
        """
        if self.base is not None:
            raise RuntimeError("cluster already started")
        reason = available(self.bin_dir)
        if reason is not None:
            raise RuntimeError(f"cannot start PostgreSQL: {reason}")
        self.base = Path(tempfile.mkdtemp(prefix="tablewatch-pg-", dir="/tmp"))
        atexit.register(self.stop)
        try:
            self._init()
            for attempt in range(3):
                self.port = free_port(self.host)
                self._write_conf({"port": str(self.port)})
                try:
                    self._pg_ctl_start()
                    break
                except RuntimeError as exc:
                    # Another process may have taken the port between probe and bind: retry.
                    if "could not bind" not in str(exc) or attempt == 2:
                        raise
            self._running = True
            self._psql_socket("CREATE ROLE auditor NOLOGIN")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (pg_ctl stop -m fast, then immediate) and remove the directory.

        Safe to call more than once and on a cluster that failed to start.
        """
        if self.base is None:
            return
        try:
            if self._running or (self.datadir / "postmaster.pid").exists():
                for mode in ("fast", "immediate"):
                    proc = self._server_cmd(
                        [
                            str(self.bin_dir / "pg_ctl"),
                            "stop",
                            "-D",
                            str(self.datadir),
                            "-m",
                            mode,
                            "-w",
                            "-t",
                            "30",
                        ],
                        check=False,
                    )
                    if proc.returncode == 0 or not (self.datadir / "postmaster.pid").exists():
                        break
        finally:
            self._running = False
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
            atexit.unregister(self.stop)

    def restart(self) -> None:
        """Restart the server (needed for settings such as shared_preload_libraries)."""
        self._server_cmd(
            [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w"]
        )
        self._running = False
        self._pg_ctl_start()
        self._running = True

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PgCluster {state} {self.host}:{self.port} base={self.base}>"

    # -- clients ----------------------------------------------------------------------------

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        """A libpq/asyncpg URI for ``user`` on ``dbname`` over TCP (no password: trust)."""
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def psql(
        self,
        sql: str,
        *,
        user: str = "postgres",
        dbname: str = "postgres",
        app: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> str:
        """Run ``sql`` (a psql script: statements, ``\\bind``/``\\g``...) over TCP 127.0.0.1.

        The script is fed on stdin to ``psql -X -q -A -t -v ON_ERROR_STOP=1`` (unaligned,
        tuples only, ``|`` between columns), so ``psql("SELECT 1")`` returns ``"1\\n"``. With
        ``app``, it is sent as application_name (PGAPPNAME). Returns stdout; raises RuntimeError
        with stderr when psql fails, unless ``check=False``.
        """
        return self._psql(
            sql, host=self.host, user=user, dbname=dbname, app=app, check=check, timeout=timeout
        )

    def set_gucs(self, gucs: Mapping[str, str] | None = None, /, **kw: str) -> None:
        """ALTER SYSTEM SET each setting, then reload and wait until new sessions see it.

        Dotted names go in the mapping: ``set_gucs({"pgaudit.log": "read"})`` (or
        ``set_gucs(**{"pgaudit.log": "read"})``). Each value is sent as one quoted string, so
        for list settings such as shared_preload_libraries ``''`` means a library named ``""``
        (the server then refuses to start): set those to a non-empty list, then :meth:`restart`.
        """
        items = {**(gucs or {}), **kw}
        script = "".join(
            f"ALTER SYSTEM SET {_check_guc_name(name)} = {quote_literal(value)};\n"
            for name, value in items.items()
        )
        if script:
            self._psql_socket(script)
        self.reload()

    def reload(self, timeout: float = 10.0) -> None:
        """``SELECT pg_reload_conf()`` and wait until a new session has the reloaded config.

        The reload is asynchronous (a SIGHUP to the postmaster); this waits until
        ``pg_conf_load_time()`` of a fresh connection moves past its value before the call.
        The logging collector re-reads its settings on its own schedule, shortly after.
        """
        before = self._psql_socket("SELECT pg_conf_load_time()").strip()
        self._psql_socket("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while self._psql_socket("SELECT pg_conf_load_time()").strip() == before:
            if time.monotonic() > deadline:
                raise TimeoutError("configuration reload not seen by new sessions")
            time.sleep(0.02)

    # -- logs -------------------------------------------------------------------------------

    def log_files(self) -> dict[str, Path]:
        """Parse ``<datadir>/current_logfiles``: destination -> absolute path."""
        result: dict[str, Path] = {}
        try:
            text = (self.datadir / "current_logfiles").read_text(encoding="utf-8")
        except FileNotFoundError:
            return result
        for line in text.splitlines():
            fmt, sep, name = line.partition(" ")
            if sep and name:
                path = Path(name)
                result[fmt] = path if path.is_absolute() else self.datadir / path
        return result

    def log_path(self, fmt: str, timeout: float = 5.0) -> Path:
        """The current log file of destination ``fmt`` ("stderr", "csvlog" or "jsonlog").

        Waits up to ``timeout`` for the logging collector to announce it; raises LookupError
        when the destination is not active.
        """
        deadline = time.monotonic() + timeout
        while True:
            path = self.log_files().get(fmt)
            if path is not None:
                return path
            if time.monotonic() > deadline:
                raise LookupError(
                    f"no {fmt!r} log in {self.datadir / 'current_logfiles'} "
                    f"(log_destination={self.settings.get('log_destination')!r})"
                )
            time.sleep(0.02)

    def read_log(self, fmt: str) -> str:
        """The whole text of the current ``fmt`` log file (undecodable bytes replaced)."""
        return self.log_path(fmt).read_text(encoding="utf-8", errors="replace")

    def wait_for_log(
        self, fmt: str, predicate: Callable[[str], bool], timeout: float = 10.0
    ) -> str:
        """Poll the current ``fmt`` log until ``predicate(text)`` is true; return that text.

        Raises TimeoutError with the last 2000 characters of the file otherwise.
        """
        deadline = time.monotonic() + timeout
        text = ""
        while True:
            try:
                text = self.read_log(fmt)
            except FileNotFoundError:  # moved away, collector not yet reopened it
                text = ""
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{fmt} log did not match within {timeout}s; last 2000 chars:\n{text[-2000:]}"
                )
            time.sleep(0.05)

    def rotate(self, timeout: float = 5.0) -> None:
        """``SELECT pg_rotate_logfile()`` and wait until every current log file exists.

        With the fixed ``log_filename`` the collector reopens the same names, so the way to
        simulate logrotate is: rename the files away, then call this.
        """
        self._psql_socket("SELECT pg_rotate_logfile()")
        deadline = time.monotonic() + timeout
        while not all(p.exists() for p in self.log_files().values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"log files not reopened after rotation: {self.log_files()}")
            time.sleep(0.02)

    # -- internals --------------------------------------------------------------------------

    def _init(self) -> None:
        base = self._base()
        for d in (self.datadir, self.log_dir, self.socket_dir):
            d.mkdir(mode=0o700)
        base.chmod(0o755)  # the parent must be traversable by the server user
        self.log_dir.chmod(0o755)  # readable by collectors running as another user
        if self._as_root:
            pw = pwd.getpwnam(SERVER_OS_USER)
            for p in (base, self.datadir, self.log_dir, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._server_cmd(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--locale=C.UTF-8",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        (self.datadir / "pg_hba.conf").write_text(
            "# tablewatch test cluster: trust everything local\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host all all ::1/128 trust\n"
            "local replication all trust\n"
            "host replication all 127.0.0.1/32 trust\n",
            encoding="utf-8",
        )
        self._write_conf(
            {
                "listen_addresses": self.host,
                "unix_socket_directories": str(self.socket_dir),
                "log_directory": str(self.log_dir),
                **self.settings,
            }
        )

    def _write_conf(self, settings: Mapping[str, str]) -> None:
        # Appended: later lines win, so a retry can override the port.
        lines = "".join(f"{name} = {quote_literal(v)}\n" for name, v in settings.items())
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\n# tablewatch test settings\n" + lines)

    def _server_cmd(
        self, argv: list[str], *, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a server-side program, as the postgres OS user when we are root."""
        if self._as_root:
            argv = ["runuser", "-u", SERVER_OS_USER, "--", *argv]
        proc = self._run(argv, self._env(), timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def _run(
        self, argv: list[str], env: dict[str, str], timeout: float, stdin_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a program in the cluster directory, its output captured as text."""
        return subprocess.run(
            argv,
            cwd=self._base(),
            env=env,
            input=stdin_text,
            stdin=subprocess.DEVNULL if stdin_text is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _pg_ctl_start(self) -> None:
        start_log = self.server_output
        if self._as_root and not start_log.exists():
            start_log.touch()
            pw = pwd.getpwnam(SERVER_OS_USER)
            os.chown(start_log, pw.pw_uid, pw.pw_gid)
        argv = [
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(self.datadir),
            "-l",
            str(start_log),
            "-w",
            "-t",
            str(int(self.start_timeout)),
        ]
        if self._as_root:
            argv = ["runuser", "-u", SERVER_OS_USER, "--", *argv]
        # pg_ctl's output goes to a file, not a pipe: the postmaster it forks must not keep a
        # pipe of ours open.
        out_path = self._base() / "pg_ctl.out"
        with open(out_path, "w+", encoding="utf-8") as out:
            try:
                rc = subprocess.run(
                    argv,
                    cwd=self._base(),
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=self.start_timeout + 10,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
            out.seek(0)
            output = out.read()
        if rc != 0:
            raise RuntimeError(
                f"PostgreSQL did not start (pg_ctl exit {rc}) in {self.datadir}:\n{output}\n"
                f"--- pg_ctl.log ---\n{_tail(start_log)}\n"
                f"--- {self.log_dir / 'postgresql.log'} ---\n"
                f"{_tail(self.log_dir / 'postgresql.log')}"
            )

    def _env(self, app: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PG_ENV_VARS}
        env["LC_ALL"] = "C.UTF-8"
        env["PGCONNECT_TIMEOUT"] = "10"
        if app is not None:
            env["PGAPPNAME"] = app
        return env

    def _psql_socket(self, sql: str) -> str:
        """Run ``sql`` as postgres over the Unix socket (administrative, stays out of the way)."""
        return self._psql(
            sql,
            host=str(self.socket_dir),
            user="postgres",
            dbname="postgres",
            app="tablewatch-tests-admin",
            check=True,
            timeout=60.0,
        )

    def _psql(
        self,
        sql: str,
        *,
        host: str,
        user: str,
        dbname: str,
        app: str | None,
        check: bool,
        timeout: float,
    ) -> str:
        argv = [
            str(self.bin_dir / "psql"),
            "-h",
            host,
            "-p",
            str(self.port),
            "-U",
            user,
            "-d",
            dbname,
            "-v",
            "ON_ERROR_STOP=1",
            "-X",
            "-q",
            "-A",
            "-t",
            "-f",
            "-",
        ]
        proc = self._run(argv, self._env(app), timeout, sql)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"psql as {user}@{dbname} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                f"--- script ---\n{sql}"
            )
        return proc.stdout
