"""The app at 80x24, keys only: footer keys fit, ? lists every key, Esc and r ask or leave as a user expects."""

from __future__ import annotations

from textual.app import App
from textual.widgets import DataTable, Footer, Input
from textual.widgets._footer import FooterKey

from core.context import Context
from storage.inventory import upsert_account, upsert_asset
from tests.tui.demo_data import NOW
from tests.tui.helpers import sync, toasts, until
from tui.app import APP_COMMANDS, KeyturnApp
from tui.modals.confirm import ConfirmModal
from tui.modals.help import HelpModal
from tui.modals.task_form import TaskFormModal

SIZE = (80, 24)
# What a person needs in each mode's footer at 80 columns (besides ? Keys and q Quit).
FOOTER = {
    "o": ["Reveal old/new", "Refresh"],
    "t": ["New", "Edit", "Run now", "Preview targets", "Delete"],
    "h": ["Cancel run", "Page", "Refresh"],
    "s": ["Reveal", "Retry", "Retry all failed", "Search", "Page"],
    "i": ["New", "Edit", "Import", "Trust", "Search", "Page"],
    "u": ["Verify chain", "New operator", "Page"],
}


def footer_texts(app: App) -> list[str]:
    """Descriptions of the footer keys drawn whole inside the screen's width."""
    footer = app.screen.query_one(Footer)
    shown = []
    for widget in footer.query("FooterKey, FooterLabel"):
        region = widget.region
        if region.width and region.right <= footer.region.right:
            shown.append(str(widget.description if isinstance(widget, FooterKey) else widget.render()).strip())
    return shown


@sync
async def test_footer_keys_fit_80_columns_and_help_lists_every_key(demo_ctx: Context) -> None:
    """Every mode at 80x24 shows its main keys, ? Keys and q Quit whole; ? lists the hidden ones too."""
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        for key, wanted in FOOTER.items():
            await pilot.press(key)
            # The footer is laid out after the mode switch: wait for it (a busy machine takes more frames).
            await until(pilot, lambda wanted=wanted: set([*wanted, "Keys", "Quit"]) <= set(footer_texts(app)),
                        f"{key}: the footer keys {wanted}")
            shown = footer_texts(app)
            for description in [*wanted, "Keys", "Quit"]:
                assert description in shown, f"{key}: {description!r} not whole in the footer {shown}"
        await pilot.press("t", "question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpModal), "the help screen")
        table = app.screen.query_one("#help-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        for key, does in (("c", "Copy"), ("a", "Active on/off"), ("r", "Run now"), ("q", "Quit"), ("i", "Inventory")):
            assert [key, does] in [r[:2] for r in rows], rows
        assert rows[0][2] == "this screen"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpModal), "help to close")


@sync
async def test_esc_leaves_search_and_r_and_a_filled_form_ask_first(demo_ctx: Context) -> None:
    """Esc in the search field gives the mode keys back; r and Esc on a typed-in form ask before acting."""
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i", "slash", *"web", "escape")
        assert isinstance(app.screen.focused, DataTable)
        await pilot.press("t")
        assert app.current_mode == "tasks"

        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the run question")
        assert "Run " in app.screen.title_text
        await pilot.press("n")
        await until(pilot, lambda: app.current_mode == "tasks" and len(app.screen_stack) == 1, "the task list")
        assert not app.runs

        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, TaskFormModal), "the form")
        await pilot.press("escape")  # nothing typed: closes at once
        await until(pilot, lambda: len(app.screen_stack) == 1, "the form to close")
        await pilot.press("n", *"half-done", "escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the discard question")
        await pilot.press("n")  # keep editing
        await until(pilot, lambda: isinstance(app.screen, TaskFormModal), "the form again")
        assert app.screen.query_one("#name", Input).value == "half-done"
        await pilot.press("escape", "y")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the form to close")


@sync
async def test_palette_offers_keyturn_actions_before_textual_ones(demo_ctx: Context) -> None:
    """ctrl+p lists this screen's actions and the main actions of every mode above Textual's generic ones."""
    app = KeyturnApp(demo_ctx, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        generic = [c.title for c in App.get_system_commands(app, app.screen)]
        first_generic = min(titles.index(t) for t in generic)
        for title, _mode, _action in APP_COMMANDS:
            assert titles.index(title) < first_generic, titles
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "New task")
        command.callback()
        await until(pilot, lambda: isinstance(app.screen, TaskFormModal), "the new task form")


@sync
async def test_reveal_before_any_operator_says_how_to_enrol(ctx: Context) -> None:
    """No operator yet: v says how to enrol one instead of asking for a code that cannot work."""
    ctx.settings.reconcile_on_start = False
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="127.0.0.2")
        upsert_account(ctx.db, s, asset, "root", secret="Not-Shown-1")
    app = KeyturnApp(ctx)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await pilot.pause()
        app.screen.query_one("#accounts-table", DataTable).focus()
        await pilot.press("v")
        await until(pilot, lambda: any("keyturn operator add" in t for t in toasts(app)), "the enrol hint")
        assert len(app.screen_stack) == 1
