"""tui.text and the rule that data reaches widgets only through it; NO_COLOR and 16 colours."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import textual.constants
from rich.color import ColorType
from rich.style import Style
from rich.text import Text

from core.findings import Severity
from tablewatch.live import LiveEngine
from tests.tui.world import app_for, screen_console, screen_text, settle
from tui import text as t
from tui.app import DashboardApp
from tui.readers import title

TUI = Path(__file__).resolve().parents[2] / "tui"
WIDGETS = {"Static", "Label", "Button", "TabPane", "Tab", "Input", "Digits", "Pretty"}
FORBIDDEN_CALLS = {"from_markup", "assemble", "from_ansi", "render_str", "parse"}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(p.name, ast.parse(p.read_text(), str(p))) for p in sorted(TUI.glob("*.py"))]


def _is_text_expression(node: ast.expr) -> bool:
    """A str built from something (f-string, +, %, str(), .format()): never for a widget."""
    if isinstance(node, ast.JoinedStr | ast.BinOp):
        return True
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in {"str", "repr", "format"}:
            return True
        if isinstance(func, ast.Attribute) and func.attr in {"format", "join"}:
            return True
    return False


def test_data_reaches_widgets_only_through_tui_text() -> None:
    problems: list[str] = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            where = f"{name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.module == "core.safetext":
                if name != "text.py":
                    problems.append(f"{where} imports core.safetext (only tui/text.py may)")
            if not isinstance(node, ast.Call):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Attribute) and target.attr in {
                            "border_title",
                            "border_subtitle",
                            "title",
                            "sub_title",
                        }:
                            if not isinstance(node.value, ast.Call):
                                problems.append(f"{where} sets {target.attr} from a str")
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in FORBIDDEN_CALLS:
                problems.append(f"{where} calls {called}: markup or ANSI parsing")
            if called == "notify":
                markup = [k for k in node.keywords if k.arg == "markup"]
                if not markup or not (
                    isinstance(markup[0].value, ast.Constant) and markup[0].value.value is False
                ):
                    problems.append(f"{where} notify() without markup=False")
            if called in {"Text", "Content"} and name != "text.py" and node.args:
                problems.append(f"{where} builds {called} from a value outside tui/text.py")
            if called in WIDGETS | {"notify", "update"}:
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if _is_text_expression(arg):
                        problems.append(f"{where} passes a built str to {called}()")
    assert problems == []


def test_the_structural_check_can_fail(tmp_path: Path) -> None:
    bad = ast.parse('self.notify(f"paged {user}")\nStatic(f"{user}")\nText.from_markup(x)\n')
    calls = [n for n in ast.walk(bad) if isinstance(n, ast.Call)]
    assert any(_is_text_expression(a) for c in calls for a in c.args)
    assert {getattr(c.func, "attr", None) for c in calls} & FORBIDDEN_CALLS


@pytest.mark.parametrize(
    ("severity", "word"),
    [
        (Severity.CRITICAL, "CRIT"),
        (Severity.WARNING, "WARN"),
        (Severity.INFO, "info"),
        (Severity.NONE, "-   "),
    ],
)
def test_severity_is_a_word_not_only_a_colour(severity: Severity, word: str) -> None:
    assert t.severity_word(severity).plain == word


def test_sparkline_scales_to_the_peak() -> None:
    assert t.sparkline([0, 0, 5, 10]).plain == "▁▁▅█"
    assert t.sparkline([]).plain == ""
    assert t.sparkline([3, 3]).plain == "██"


def test_statement_redacted_unless_revealed() -> None:
    sql = "SELECT * FROM crm.client_list WHERE email = 'ann@example.com' AND id > 41"
    assert t.statement(sql, False).plain == (
        "SELECT * FROM crm.client_list WHERE email = '?' AND id > ?"
    )
    assert "ann@example.com" in t.statement(sql, True).plain
    assert t.statement(None, False).plain == "<not logged>"
    assert t.parameters(("1", "x"), False).plain == "2 parameters hidden"
    assert t.parameters(("1",), True).plain == "params: $1=1"
    assert t.parameters(None, True).plain == ""


def test_a_cut_literal_stays_masked() -> None:
    sql = "SELECT * FROM t WHERE secret = '" + "s" * 20_000 + "'"
    assert "sss" not in t.statement(sql, False).plain


def test_cell_pads_and_cuts() -> None:
    assert t.cell("ab", 4).plain == "ab  "
    assert t.cell("abcdef", 4).plain == "abc…"
    assert t.cell("名前名前", 4).cell_len == 4


def _colours(app: DashboardApp) -> set[tuple[int, int, int]]:
    console, update = screen_console(app, "truecolor")
    found: set[tuple[int, int, int]] = set()
    for segment in console.render(update):
        style = segment.style
        if style is None or segment.control:
            continue
        for colour in (style.color, style.bgcolor):
            if colour is not None and not colour.is_default:
                found.add(tuple(colour.get_truecolor()))  # type: ignore[arg-type]
    return found


async def test_no_color_is_honoured(view: LiveEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual reads NO_COLOR in App.__init__ and adds a Monochrome line filter: greys only."""
    coloured = app_for(view)
    async with coloured.run_test(size=(100, 30)) as pilot:
        await settle(coloured)
        await pilot.pause()
        assert any(len(set(c)) > 1 for c in _colours(coloured))  # the check can fail
    monkeypatch.setenv("NO_COLOR", "1")
    plain = app_for(view)
    assert plain.no_color
    async with plain.run_test(size=(100, 30)) as pilot:
        await settle(plain)
        await pilot.pause()
        colours = _colours(plain)
        assert colours and all(r == g == b for r, g, b in colours)
        screen = screen_text(plain)
        assert "CRIT" in screen  # severity still readable: a word, not a colour
        await pilot.press("question_mark")
        await pilot.pause()
        assert all(r == g == b for r, g, b in _colours(plain))


def test_our_styles_are_the_sixteen_ansi_colours() -> None:
    """16-colour terminals: every style we use is bold/dim/underline and the 16 ANSI colours."""
    for style in t.OWN_STYLES:
        parsed = Style.parse(style)
        for colour in (parsed.color, parsed.bgcolor):
            assert colour is None or colour.type is ColorType.STANDARD, style


async def test_sixteen_colours(view: LiveEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 16-colour console the words carry the severity all the same."""
    monkeypatch.setattr(textual.constants, "COLOR_SYSTEM", "standard")
    app = app_for(view)
    assert app.console.color_system == "standard"
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app)
        await pilot.pause()
        screen = screen_text(app)
        assert re.search(r"CRIT +100 ", screen) and re.search(r"\n│- +0 ", screen)


def test_text_end_is_empty() -> None:
    """Texts we build never carry a trailing newline into a cell."""
    assert t.data("x").end == "" and isinstance(t.label("y"), Text)


def test_the_table_title_says_how_many_readers_are_not_listed() -> None:
    assert "Readers (200 of 10,223)" in title("anomaly", "", 200, 10_223).plain
    assert "Readers (7)" in title("anomaly", "", 7, 7).plain
