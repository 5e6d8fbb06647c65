"""Settings: settings.toml, overridden by `TABLEWATCH_<SECTION>__<KEY>` environment variables.

One `Settings` object, built by `load_settings` and passed explicitly (never a global). A bad file
stops with one line naming the file, the key and what was expected (`SettingsError`).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from core.durations import parse_duration
from core.safetext import safe
from core.tables import TableName

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

SEARCH_PATH = (
    Path("settings.toml"),
    Path("~/.config/tablewatch/settings.toml"),
    Path("/etc/tablewatch/settings.toml"),
)
"""Where `--config` is looked for when not given, first found wins."""


class SettingsError(Exception):
    """Settings that cannot be used; the message is one line for the operator."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WatchedTable(_Section):
    """`[[tables]]`: a table whose readers are watched."""

    name: str
    """`schema.table` as in SQL (quote mixed-case parts)."""
    rows: int | None = Field(default=None, ge=0)
    """Row count, when known; live sources read it from the database."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        TableName.parse(value)
        return value

    def table(self) -> TableName:
        """As a core `TableName`."""
        return TableName.parse(self.name, self.rows)


class ExpectedPrincipal(_Section):
    """`[[expected]]`: a principal whose habit is known (the nightly backup)."""

    user: str | None = None
    client_addr: str | None = None
    """An address or a CIDR network."""
    application_name: str | None = None
    note: str = ""

    @field_validator("client_addr")
    @classmethod
    def _valid_network(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_network(value, strict=False)
        return value

    @model_validator(mode="after")
    def _at_least_one(self) -> ExpectedPrincipal:
        if self.user is None and self.client_addr is None and self.application_name is None:
            raise ValueError("give at least one of user, client_addr, application_name")
        return self


class DetectionSettings(_Section):
    """`[detection]`."""

    learning_period: Duration = timedelta(hours=24)
    """First-seen and habit signals are learned, not raised, while the install is this fresh."""
    quiet_period: Duration = timedelta(hours=1)
    """A principal's severity falls back after this long without the behaviour that raised it."""
    audit_role: str = Field(default="auditor", min_length=1)
    """The role named in `pgaudit.role`: a REVOKE from it on a watched table is tampering."""
    audit_gap_window: Duration = timedelta(minutes=10)
    """How long an audited statement may account for the reads the table's statistics count
    (a long statement logged at its start is read in full only at its end)."""


class DatabaseSettings(_Section):
    """`[database]`: the live pg_stat_* sources and `tablewatch doctor`."""

    dsn: str = ""
    """libpq URI of the monitoring role; "" disables the live sources."""
    password: SecretStr | None = None
    """Prefer TABLEWATCH_DATABASE__PASSWORD or ~/.pgpass to writing it here."""
    poll_interval: Duration = timedelta(seconds=10)
    """How often the watched tables' read statistics (pg_stat_all_tables) are polled."""
    statements_interval: Duration = timedelta(seconds=10)
    """How often pg_stat_statements is polled (rows and calls per role)."""
    activity_interval: Duration = timedelta(seconds=2)
    """How often pg_stat_activity is polled (who reads the table right now)."""
    setup_interval: Duration = timedelta(seconds=10)
    """How often the audit set-up is read again (a change is tampering)."""
    statement_timeout: Duration = timedelta(seconds=5)


class AuditLogSettings(_Section):
    """`[audit_log]`: the pgaudit trail in the server log."""

    path: str = "/var/log/postgresql/*.csv"
    """A file or a glob; rotation is followed. "": no audit log (a managed database without
    log files): pg_stat_statements, with `[database] dsn`, tells the reads per role."""
    format: Literal["auto", "csvlog", "jsonlog", "stderr"] = "auto"
    log_line_prefix: str = "%m [%p] %q%u@%d %r %a "
    """The server's log_line_prefix, for the stderr format."""
    start: Literal["end", "beginning"] = "end"
    """Where a first run starts reading (later runs resume at their checkpoint)."""
    poll_interval: Duration = timedelta(milliseconds=250)
    """How often an idle log is checked for growth and rotation."""

    @field_validator("log_line_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if value.count("%") and value.rstrip().endswith("%") and not value.endswith("%%"):
            raise ValueError("log_line_prefix ends with a bare %")
        return value


class _Listener(_Section):
    """A listener that may serve HTTPS."""

    tls_cert_file: str = ""
    """PEM certificate (with its chain) to serve HTTPS; with tls_key_file. "" serves HTTP."""
    tls_key_file: str = ""

    @model_validator(mode="after")
    def _tls_pair(self) -> _Listener:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("give both tls_cert_file and tls_key_file, or neither")
        return self


class MetricsSettings(_Listener):
    """`[metrics]`: Prometheus /metrics."""

    listen: str = "127.0.0.1:9746"
    """host:port; "" disables."""
    top_k: int = Field(default=50, ge=1, le=10_000)
    """Principals exported one by one; the rest are folded into principal="other"."""
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    """user = bcrypt hash (as in the Prometheus exporter-toolkit web config,
    `htpasswd -nBC 10 USER`); empty: no authentication."""

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if not user or ":" in user:
                raise ValueError(f"basic_auth_users: {user!r} is not a user name")
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
                raise ValueError(f"basic_auth_users: the value for {user!r} is not a bcrypt hash")
        return value


class ApiSettings(_Listener):
    """`[api]`: the agent API that remote dashboards attach to."""

    listen: str = "127.0.0.1:9747"
    """host:port; "" disables."""
    token: SecretStr | None = None
    """Required when listening off loopback (TABLEWATCH_API__TOKEN); a dashboard attaching with
    `--agent` sends it. At least 16 characters (`openssl rand -hex 32`)."""
    ca_file: str = ""
    """For a dashboard attaching to https:// agents: the CA certificate(s) to trust, when not
    the system's."""

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("token: at least 16 characters (openssl rand -hex 32)")
        return value


class StateSettings(_Section):
    """`[state]`: checkpoints, baselines, the alert outbox, the operator trail."""

    dir: Path = Path("~/.local/state/tablewatch")

    def path(self) -> Path:
        """The directory, `~` expanded."""
        return self.dir.expanduser()


class _Sink(_Section):
    timeout: Duration = timedelta(seconds=10)
    """One delivery attempt gives up after this (then it is retried with backoff)."""


class PagerDutySink(_Sink):
    """`[alerts.pagerduty]`: PagerDuty Events API v2."""

    url: str = "https://events.pagerduty.com/v2/enqueue"
    """The Events API endpoint (EU accounts: https://events.eu.pagerduty.com/v2/enqueue)."""
    routing_key: SecretStr | None = None
    """The integration key (TABLEWATCH_ALERTS__PAGERDUTY__ROUTING_KEY)."""
    component: str = "postgresql"


class AlertmanagerSink(_Sink):
    """`[alerts.alertmanager]`: Alertmanager API v2."""

    url: str = "http://127.0.0.1:9093"
    """The Alertmanager's base URL; alerts go to `<url>/api/v2/alerts`."""
    resend: Duration = timedelta(minutes=1)
    """Active alerts are re-sent this often (keep it under Alertmanager's resolve_timeout)."""


class OpsgenieSink(_Sink):
    """`[alerts.opsgenie]`: Opsgenie Alert API."""

    url: str = "https://api.opsgenie.com/v2/alerts"
    """EU accounts: https://api.eu.opsgenie.com/v2/alerts."""
    api_key: SecretStr | None = None
    """An API integration key (TABLEWATCH_ALERTS__OPSGENIE__API_KEY)."""


class SlackSink(_Sink):
    """`[alerts.slack]`: a Slack incoming webhook."""

    webhook_url: SecretStr | None = None
    """The webhook URL is the secret (TABLEWATCH_ALERTS__SLACK__WEBHOOK_URL)."""


class WebhookSink(_Sink):
    """`[alerts.webhook]`: JSON to any URL, signed."""

    url: str = ""
    secret: SecretStr | None = None
    """HMAC-SHA256 key of the X-Tablewatch-Signature header
    (TABLEWATCH_ALERTS__WEBHOOK__SECRET)."""


class CommandSink(_Sink):
    """`[alerts.command]`: a local command, the alert as JSON on its stdin."""

    argv: list[str] = Field(default_factory=list)
    """The command and its arguments (no shell). Exit 0: delivered; 75 (EX_TEMPFAIL): retried;
    any other status: failed."""
    timeout: Duration = timedelta(seconds=30)


class AlertsSettings(_Section):
    """`[alerts]`: the rules that page, then one table per sink (a sink is on when present)."""

    page_on: Literal["critical", "warning", "none"] = "critical"
    """Findings at or above this severity page on their own; "none": only operators page."""
    renotify: Duration = timedelta(hours=4)
    """An alert still active is sent again after this long ("0s": never)."""
    resolve_after: Duration = timedelta(hours=1)
    """A rule's alert resolves itself once its reader has raised nothing for this long."""
    flood_window: Duration = timedelta(hours=1)
    flood_per_principal: int = Field(default=3, ge=1)
    """New alerts per reader (user, client, application) per flood window; more are suppressed
    and counted."""
    flood_total: int = Field(default=20, ge=1)
    """New alerts overall per flood window; more are suppressed and counted."""
    quiet_hours: str = ""
    """"HH:MM-HH:MM" (UTC): the rules' pages wait until it ends; operators' pages never wait.
    "" (the default): no quiet hours."""

    pagerduty: PagerDutySink | None = None
    alertmanager: AlertmanagerSink | None = None
    opsgenie: OpsgenieSink | None = None
    slack: SlackSink | None = None
    webhook: WebhookSink | None = None
    command: CommandSink | None = None

    @field_validator("quiet_hours")
    @classmethod
    def _valid_quiet_hours(cls, value: str) -> str:
        if value:
            parse_quiet_hours(value)
        return value


def parse_quiet_hours(value: str) -> tuple[int, int]:
    """`"22:00-07:00"` -> minutes of the day (start, end); raises ValueError.

    >>> parse_quiet_hours("22:00-07:30")
    (1320, 450)
    """
    try:
        start, end = (part.strip() for part in value.split("-"))
        minutes = []
        for part in (start, end):
            hours, mins = part.split(":")
            h, m = int(hours), int(mins)
            if not (0 <= h < 24 and 0 <= m < 60):
                raise ValueError
            minutes.append(h * 60 + m)
    except ValueError:
        raise ValueError(f"quiet_hours must be HH:MM-HH:MM in UTC, got {value!r}") from None
    if minutes[0] == minutes[1]:
        raise ValueError("quiet_hours starts and ends at the same minute")
    return minutes[0], minutes[1]


_FILE_DATA: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "tablewatch_settings_file", default=None
)


class _FileSource(PydanticBaseSettingsSource):
    """The already-parsed settings file (parsed by us, for one-line errors)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_FILE_DATA.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get() or {})


class Settings(BaseSettings):
    """Everything tablewatch can be told; see settings.toml for each key with its default."""

    model_config = SettingsConfigDict(
        env_prefix="TABLEWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    tables: list[WatchedTable] = Field(default_factory=list)
    expected: list[ExpectedPrincipal] = Field(default_factory=list)
    detection: DetectionSettings = DetectionSettings()
    database: DatabaseSettings = DatabaseSettings()
    audit_log: AuditLogSettings = AuditLogSettings()
    metrics: MetricsSettings = MetricsSettings()
    api: ApiSettings = ApiSettings()
    state: StateSettings = StateSettings()
    alerts: AlertsSettings = AlertsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))

    def watched_tables(self) -> list[TableName]:
        """The `[[tables]]` as core table names."""
        return [t.table() for t in self.tables]


def find_config(explicit: Path | None) -> Path | None:
    """The settings file to read: `--config`, else the first of SEARCH_PATH that exists."""
    if explicit is not None:
        return explicit
    for candidate in SEARCH_PATH:
        path = candidate.expanduser()
        if path.is_file():
            return path
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a settings file.

    Raises:
        SettingsError: unreadable or not TOML (one line, with the position).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such settings file") from None
    except IsADirectoryError:
        raise SettingsError(f"{path}: is a directory, expected a settings.toml file") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not UTF-8 text, expected TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None


def _where(loc: tuple[int | str, ...]) -> str:
    """`('tables', 0, 'name')` -> `[[tables]] #1: name`; `('audit_log', 'format')` -> ..."""
    if not loc:
        return "settings"
    head, rest = loc[0], list(loc[1:])
    if head in ("tables", "expected") and rest and isinstance(rest[0], int):
        index = rest.pop(0)
        where = f"[[{head}]] #{int(index) + 1}"
    elif rest:
        section = [str(head)]
        while len(rest) > 1 and isinstance(rest[0], str):
            section.append(str(rest.pop(0)))
        where = "[" + ".".join(section) + "]"
    else:
        return f"top level: {head}"
    return f"{where} {'.'.join(str(p) for p in rest)}".rstrip()


_SECRET_KEYS = frozenset({"password", "token", "routing_key", "api_key", "webhook_url", "secret"})
"""Keys whose values are never echoed in an error, even a malformed one."""


def _explain(exc: ValidationError) -> str:
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        what = "unknown key"
    elif kind == "missing":
        what = "required key is missing"
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
        given = err.get("input")
        secret = any(str(part) in _SECRET_KEYS for part in loc)
        quiet = secret or isinstance(given, dict | list) or "got" in message
        shown = "" if quiet else f" (got {safe(repr(given), 80)})"
        what = f"{safe(message, 300)}{shown}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_where(tuple(p if isinstance(p, int) else safe(p, 60) for p in loc))}: {what}{more}"


def _check_environment(environ: Mapping[str, str]) -> None:
    """A misspelt TABLEWATCH_* variable is an error, not a silently ignored setting."""
    for name in environ:
        upper = name.upper()
        if not upper.startswith("TABLEWATCH_"):
            continue
        model: type[BaseModel] = Settings
        parts = upper.removeprefix("TABLEWATCH_").lower().split("__")
        for i, part in enumerate(parts):
            field = model.model_fields.get(part)
            if field is None:
                where = safe(name, 100)  # any bytes but NUL and "=" may be in a variable's name
                what = safe(repr(".".join(parts)), 100)
                raise SettingsError(f"environment: {where}: unknown setting {what}")
            annotation = field.annotation
            nested = [
                a
                for a in getattr(annotation, "__args__", (annotation,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            if i + 1 < len(parts):
                if not nested:
                    raise SettingsError(f"environment: {safe(name, 100)}: {part!r} has no sub-keys")
                model = nested[0]
            elif nested and part not in ("tables", "expected"):
                raise SettingsError(
                    f"environment: {safe(name, 100)}: {part!r} is a section, not a key"
                )


@contextmanager
def _file_data(data: Mapping[str, Any]) -> Iterator[None]:
    token = _FILE_DATA.set(data)
    try:
        yield
    finally:
        _FILE_DATA.reset(token)


def load_settings(path: Path | None = None, *, search: bool = True) -> Settings:
    """Read settings from `path` (or the search path) with environment overrides.

    Raises:
        SettingsError: one line naming the file, the key and what was expected.
    """
    source = find_config(path) if search else path
    data = read_toml(source) if source is not None else {}
    label = str(source) if source is not None else "environment"
    _check_environment(os.environ)
    try:
        with _file_data(data):
            return Settings()
    except PydanticSettingsError as exc:  # a complex value (TABLEWATCH_TABLES) that is not JSON
        raise SettingsError(f"environment: {safe(str(exc), 200)}") from None
    except ValidationError as exc:
        env_note = ""
        if any(k.upper().startswith("TABLEWATCH_") for k in os.environ):
            env_note = " (file or TABLEWATCH_* environment)"
        raise SettingsError(f"{label}{env_note}: {_explain(exc)}") from None
