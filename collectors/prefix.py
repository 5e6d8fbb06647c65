"""`log_line_prefix` to a regular expression, for the stderr log format.

Free-text escapes (%u user, %d database, %a application_name, %b backend type) match lazily: the
first `SEVERITY:  ` after them ends the prefix. PostgreSQL does not escape these values, so a line
whose application_name itself contains `LOG:  ` is ambiguous in the stderr format; csvlog and
jsonlog are not. Prefer them where you can (README, "Which log format").
"""

from __future__ import annotations

import re

DEFAULT_PREFIX = "%m [%p] %q%u@%d %r %a "

_TS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z0-9+:\-/_]+)?"

# escape -> (group name or None, pattern)
_ESCAPES: dict[str, tuple[str | None, str]] = {
    "a": ("a", r".*?"),
    "u": ("u", r".*?"),
    "d": ("d", r".*?"),
    "b": (None, r".*?"),
    "r": ("r", r"\S*?"),
    "h": ("h", r"\S*?"),
    "p": ("p", r"[0-9]{1,10}"),
    "P": (None, r"\d*"),
    "t": ("t", _TS),
    "m": ("m", _TS),
    "n": ("n", r"\d+(?:\.\d+)?"),
    "i": (None, r".*?"),
    "e": (None, r"[0-9A-Z]{5}"),
    "c": ("c", r"[0-9a-f]+\.[0-9a-f]+"),
    "l": (None, r"\d+"),
    "s": (None, _TS),
    "v": (None, r"\S*"),
    "x": (None, r"\d+"),
    "Q": (None, r"-?\d+"),
}

PRIMARY_SEVERITIES = "DEBUG1|DEBUG2|DEBUG3|DEBUG4|DEBUG5|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC"
SECONDARY_SEVERITIES = frozenset({"DETAIL", "HINT", "CONTEXT", "STATEMENT", "QUERY", "LOCATION"})
_SEVERITY = PRIMARY_SEVERITIES + "|" + "|".join(sorted(SECONDARY_SEVERITIES))


class BadPrefix(ValueError):
    """A log_line_prefix we cannot turn into a pattern."""


def prefix_pattern(prefix: str) -> str:
    """The regular expression (without anchors) that matches lines written with `prefix`.

    >>> bool(re.match(prefix_pattern("%m [%p] "), "2026-11-29 03:35:50.123 UTC [42] "))
    True

    Raises:
        BadPrefix: an escape PostgreSQL does not know, or a dangling `%`.
    """
    out: list[str] = []
    seen: set[str] = set()
    optional_from: int | None = None
    i, n = 0, len(prefix)
    while i < n:
        ch = prefix[i]
        if ch != "%":
            out.append(re.escape(ch))
            i += 1
            continue
        j = i + 1
        padded = False
        while j < n and (prefix[j] == "-" or prefix[j].isdigit()):
            padded = True
            j += 1
        if j >= n:
            raise BadPrefix(f"log_line_prefix ends with a bare %: {prefix!r}")
        esc = prefix[j]
        i = j + 1
        if esc == "%":
            out.append("%")
        elif esc == "q":
            optional_from = len(out)
        elif esc in _ESCAPES:
            name, pattern = _ESCAPES[esc]
            body = f"(?P<{name}>{pattern})" if name and name not in seen else f"(?:{pattern})"
            if name:
                seen.add(name)
            out.append(rf" *{body} *" if padded else body)
        else:
            raise BadPrefix(f"log_line_prefix has an unknown escape %{esc}: {prefix!r}")
    if optional_from is not None:
        out[optional_from:] = ["(?:" + "".join(out[optional_from:]) + ")?"]
    return "".join(out)


def line_regex(prefix: str) -> re.Pattern[str]:
    """A pattern for one stderr log line: prefix groups, `sev` and `msg`."""
    return re.compile(rf"{prefix_pattern(prefix)}(?P<sev>{_SEVERITY}):  (?P<msg>.*)", re.DOTALL)
