"""The task use cases from the command line and from the app leave the same audit rows: create, edit,
deactivate, copy and delete each live once in core.tasks, so their action names, objects, details and order
cannot drift apart between the two front ends (issue 10)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from core import tasks
from core.audit import list_events
from core.config import load_settings
from core.context import Context, open_context
from core.services import inventory
from tests.tui.helpers import until
from tui.app import KeyturnApp
from tui.cli import main

SIZE = (100, 32)


def _copy(ctx: Context) -> dict[str, object]:
    """The surviving copy as core reads it, without what differs by database or clock."""
    spec = dataclasses.asdict(tasks.get_task(ctx, "nightly-copy"))
    return {k: v for k, v in spec.items() if k not in ("id", "created_at", "updated_at", "next_run_at")}


def _rows(ctx: Context) -> list[tuple[str, str, str, dict]]:
    """The task events, oldest first; the setup's asset.add is left out and ids are per database, so dropped."""
    events = [e for e in reversed(list_events(ctx, limit=50)) if e.action.startswith("task.")]
    return [(e.action, e.object_id, e.actor, {k: v for k, v in e.detail.items() if k != "id"}) for e in events]


def _with_asset(settings) -> Context:  # type: ignore[no-untyped-def]
    ctx = open_context(settings, operator="tester", source="pytest")
    inventory.add_asset(ctx, "web9", address="10.9.0.9")
    return ctx


def _cli_rows(keyturn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, settings) -> tuple[list[tuple], dict]:  # type: ignore[no-untyped-def]
    for key, value in keyturn_env.items():
        monkeypatch.setenv(key, value)
    _with_asset(settings).close()
    for args in (["task", "create", "nightly", "--asset", "web9", "--accounts", "root,deploy"],
                 ["task", "edit", "nightly", "--description", "db hosts"],
                 ["task", "deactivate", "nightly"],
                 ["task", "copy", "nightly", "nightly-copy"],
                 ["task", "delete", "nightly", "--yes"]):
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        assert main(args) == 0, args
    ctx = open_context(settings, operator="tester")
    try:
        return _rows(ctx), _copy(ctx)
    finally:
        ctx.close()


def _app_rows(tmp_path: Path) -> tuple[list[tuple], dict]:
    settings = load_settings(env={"KEYTURN_HOME": str(tmp_path / "app-home"),
                                  "KEYTURN_CONFIG": str(tmp_path / "app.toml")})
    settings.reconcile_on_start = False
    ctx = _with_asset(settings)
    app = KeyturnApp(ctx)

    def names() -> list[str]:
        table = app.screen.query_one("#tasks-table", DataTable)
        return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]

    def highlighted() -> str | None:
        table = app.screen.query_one("#tasks-table", DataTable)
        return str(table.get_row_at(table.cursor_row)[0]) if table.row_count else None

    async def flow() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("t", "n")
            await until(pilot, lambda: app.screen.query("#accounts"), "the task form")
            app.screen.query_one("#name", Input).value = "nightly"
            app.screen.query_one("#accounts", Input).value = "root,deploy"
            app.screen.query_one("#accounts", Input).focus()
            await pilot.press("tab", "tab", "space")  # past the asset filter to the list: pick web9
            await until(pilot, lambda: "web9" in str(app.screen.query_one("#assets-chosen").render()), "web9 chosen")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(app.screen_stack) == 1 and "nightly" in names(), "nightly in the table")

            await pilot.press("e")
            await until(pilot, lambda: app.screen.query("#description"), "the edit form")
            app.screen.query_one("#description", Input).value = "db hosts"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(app.screen_stack) == 1, "the form to close")

            await pilot.press("a")
            await until(pilot, lambda: any(e.action == "task.deactivate" for e in list_events(ctx, limit=5)),
                         "the task deactivated")

            await pilot.press("c")
            await until(pilot, lambda: app.screen.query("#prompt-input"), "the copy prompt")
            app.screen.query_one("#prompt-input", Input).value = "nightly-copy"
            await pilot.press("enter")
            await until(pilot, lambda: len(app.screen_stack) == 1 and "nightly-copy" in names(), "the copy")

            while highlighted() != "nightly":
                await pilot.press("up")
            await pilot.press("d")
            await until(pilot, lambda: len(app.screen_stack) == 2, "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: names() == ["nightly-copy"], "nightly gone")

    try:
        asyncio.run(flow())
        return _rows(ctx), _copy(ctx)
    finally:
        ctx.close()


def test_task_use_cases_audit_alike_from_both_front_ends(keyturn_env, monkeypatch, settings, tmp_path) -> None:
    (cli, cli_task), (app, app_task) = _cli_rows(keyturn_env, monkeypatch, settings), _app_rows(tmp_path)
    assert [r[0] for r in cli] == ["task.create", "task.edit", "task.deactivate", "task.copy", "task.delete"]
    assert app == cli, (app, cli)
    # The form and the flags build the same task (one mapper): same targets, rules, schedule and description.
    assert app_task == cli_task
    assert (cli_task["usernames"], cli_task["assets"], cli_task["description"]) == (["root", "deploy"], ["web9"], "db hosts")
