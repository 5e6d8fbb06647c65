"""Settings: the shipped settings.toml, environment overrides, and one-line errors.

A bad settings file must stop tablewatch with one line that names the file and the key, never a
traceback; secrets are held as SecretStr and never shown.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from core.durations import format_duration, parse_duration
from core.settings import Settings, SettingsError, find_config, load_settings
from core.tables import TableName

SHIPPED = Path(__file__).resolve().parents[2] / "settings.toml"
SECRET = "R0UT1NG-K3Y-s3cr3t"


@pytest.fixture(autouse=True)
def clean_environment(isolated: Path) -> None:
    """No TABLEWATCH_* variable from the outside, no settings file found by the search path
    (tests/unit/conftest.py)."""


def write_settings(tmp_path: Path, text: str | bytes, name: str = "settings.toml") -> Path:
    """A settings file in the test's directory."""
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def load_error(path: Path) -> str:
    """The message of the SettingsError that loading `path` raises; checks it is one line."""
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert "\n" not in message
    assert len(message) < 300
    return message


# ------------------------------------------------------------------------------ the shipped file


def test_shipped_settings_load() -> None:
    settings = load_settings(SHIPPED)
    assert settings.watched_tables() == [TableName("crm", "client_list")]
    assert settings.audit_log.log_line_prefix == "%m [%p] %q%u@%d %r %a "
    assert settings.detection.learning_period == timedelta(hours=24)
    assert settings.metrics.listen.startswith("127.0.0.1:")
    assert settings.api.listen.startswith("127.0.0.1:")


def test_shipped_settings_show_the_defaults() -> None:
    """settings.toml documents every key with its default: loading it changes nothing else."""
    shipped = load_settings(SHIPPED).model_dump(exclude={"tables"})
    assert shipped == Settings().model_dump(exclude={"tables"})


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key of the settings model, dotted."""
    keys = []
    for name, field in model.model_fields.items():
        args = getattr(field.annotation, "__args__", (field.annotation,))
        nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested and name not in ("tables", "expected"):
            keys += _keys(nested[0], f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


@pytest.mark.parametrize("key", _keys(Settings))
def test_shipped_settings_mention_every_key(key: str) -> None:
    assert key.rsplit(".", 1)[-1] in SHIPPED.read_text().lower()


def test_no_file_gives_the_defaults(tmp_path: Path) -> None:
    assert find_config(None) is None
    assert load_settings() == Settings()


def test_settings_toml_in_the_working_directory_is_found(tmp_path: Path) -> None:
    path = write_settings(tmp_path, '[[tables]]\nname = "sales.leads"\n')
    assert find_config(None) == Path("settings.toml")
    assert load_settings().watched_tables() == [TableName("sales", "leads")]
    assert find_config(path) == path


# ------------------------------------------------------------------------ environment overrides


def test_environment_overrides_one_key_of_a_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_settings(tmp_path, '[audit_log]\npath = "/a/*.csv"\nformat = "csvlog"\n')
    monkeypatch.setenv("TABLEWATCH_AUDIT_LOG__PATH", "/var/log/postgresql/*.json")
    settings = load_settings(path)
    assert settings.audit_log.path == "/var/log/postgresql/*.json"
    assert settings.audit_log.format == "csvlog"


def test_environment_turns_a_sink_on_with_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLEWATCH_ALERTS__PAGERDUTY__ROUTING_KEY", SECRET)
    settings = load_settings(SHIPPED)
    pagerduty = settings.alerts.pagerduty
    assert pagerduty is not None
    assert isinstance(pagerduty.routing_key, SecretStr)
    assert pagerduty.routing_key.get_secret_value() == SECRET
    for shown in (repr(settings), str(settings), repr(pagerduty), settings.model_dump_json()):
        assert SECRET not in shown


def test_environment_table_list_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLEWATCH_TABLES", '[{"name": "crm.\\"Client List\\"", "rows": 10}]')
    assert load_settings(SHIPPED).watched_tables() == [TableName("crm", "Client List", 10)]


def test_environment_duration_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLEWATCH_DETECTION__QUIET_PERIOD", "3600")
    assert load_settings(SHIPPED).detection.quiet_period == timedelta(hours=1)


# ----------------------------------------------------------------------------- one-line errors

FILE_ERRORS = {
    "bad-toml": ("[audit_log\npath = 1\n", "invalid TOML"),
    "not-utf8": (b"\xff\xfe[audit_log]", "not UTF-8"),
    "unknown-key": ("[audit_log]\npathh = '/x'\n", "[audit_log] pathh: unknown key"),
    "unknown-section": ("[auditlog]\npath = '/x'\n", "auditlog: unknown key"),
    "unknown-sink": ("[alerts.pagerdooty]\nurl = 'x'\n", "[alerts] pagerdooty: unknown key"),
    "unknown-sink-key": ("[alerts.pagerduty]\nrouting = 'x'\n", "[alerts.pagerduty] routing"),
    "wrong-type": ("[metrics]\ntop_k = 'many'\n", "[metrics] top_k"),
    "bad-choice": ("[audit_log]\nformat = 'xml'\n", "[audit_log] format"),
    "tables-not-a-list": ("tables = 'crm.client_list'\n", "tables"),
    "bad-duration": ("[detection]\nlearning_period = '24 hours'\n", "[detection] learning_period"),
    "negative-duration": ("[detection]\nquiet_period = -5\n", "[detection] quiet_period"),
    "boolean-duration": ("[detection]\nquiet_period = true\n", "[detection] quiet_period"),
    "bad-table-name": ("[[tables]]\nname = 'a.b.c'\n", "[[tables]] #1 name"),
    "unbalanced-quote": ("[[tables]]\nname = 'crm.\"client'\n", "[[tables]] #1 name"),
    "negative-rows": ("[[tables]]\nname = 'crm.t'\nrows = -1\n", "[[tables]] #1 rows"),
    "bad-cidr": (
        "[[expected]]\nuser = 'backup'\nclient_addr = '10.0.0.0/33'\n",
        "[[expected]] #1 client_addr",
    ),
    "bad-address-second-entry": (
        "[[expected]]\nuser = 'backup'\n[[expected]]\nclient_addr = 'not-an-ip'\n",
        "[[expected]] #2 client_addr",
    ),
    "empty-expected": ("[[expected]]\n", "[[expected]] #1"),
    "expected-with-only-a-note": ("[[expected]]\nnote = 'x'\n", "[[expected]] #1"),
    "prefix-bare-percent": ("[audit_log]\nlog_line_prefix = '%m %'\n", "log_line_prefix"),
}


@pytest.mark.parametrize(("text", "names"), FILE_ERRORS.values(), ids=FILE_ERRORS.keys())
def test_bad_file_is_one_line_naming_file_and_key(tmp_path: Path, text: str, names: str) -> None:
    path = write_settings(tmp_path, text, "bad.toml")
    message = load_error(path)
    assert str(path) in message
    assert names in message


@pytest.mark.parametrize(
    ("name", "words"),
    [("missing.toml", "no such settings file"), ("", "is a directory")],
    ids=["missing", "directory"],
)
def test_unreadable_file(tmp_path: Path, name: str, words: str) -> None:
    path = tmp_path / name if name else tmp_path
    message = load_error(path)
    assert str(path) in message and words in message


ENV_ERRORS = {
    "unknown-section": ("TABLEWATCH_AUDITLOG__PATH", "/x", "TABLEWATCH_AUDITLOG__PATH"),
    "unknown-key": ("TABLEWATCH_AUDIT_LOG__PATHH", "/x", "TABLEWATCH_AUDIT_LOG__PATHH"),
    "section-not-key": ("TABLEWATCH_AUDIT_LOG", "/x", "TABLEWATCH_AUDIT_LOG"),
    "key-has-no-subkeys": ("TABLEWATCH_METRICS__TOP_K__X", "1", "TABLEWATCH_METRICS__TOP_K__X"),
    "wrong-type": ("TABLEWATCH_METRICS__TOP_K", "many", "[metrics] top_k"),
    "bad-duration": ("TABLEWATCH_DETECTION__LEARNING_PERIOD", "forever", "learning_period"),
    "bad-table": ("TABLEWATCH_TABLES", '[{"name": "a.b.c"}]', "[[tables]] #1 name"),
}


@pytest.mark.parametrize(("name", "value", "names"), ENV_ERRORS.values(), ids=ENV_ERRORS.keys())
def test_bad_environment_is_one_line_naming_the_variable_or_key(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, names: str
) -> None:
    monkeypatch.setenv(name, value)
    assert names in load_error(SHIPPED)


def test_error_about_a_secret_does_not_show_it(tmp_path: Path) -> None:
    path = write_settings(tmp_path, "[database]\npassword = 31415926\n")
    message = load_error(path)
    assert "[database] password" in message
    assert "31415926" not in message


@pytest.mark.parametrize("value", ["inf", "1e300"])
def test_absurd_duration_is_a_settings_error(tmp_path: Path, value: str) -> None:
    path = write_settings(tmp_path, f"[detection]\nquiet_period = {value}\n")
    assert "[detection] quiet_period" in load_error(path)


# ------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("24h", 86400),
        ("7d", 604800),
        ("2w", 1209600),
        ("250ms", 0.25),
        ("1.5h", 5400),
        ("0s", 0),
        (90, 90),
        (0.5, 0.5),
        (timedelta(minutes=2), 120),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "value", ["", "h", "5x", "-5s", "5S", "1h-30m", ".5s", True, -1, None, "inf", 1e300]
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=1, hours=2, seconds=5), "1d2h5s"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta


def test_format_duration_keeps_milliseconds() -> None:
    assert parse_duration(format_duration(timedelta(milliseconds=250))) == timedelta(
        milliseconds=250
    )
