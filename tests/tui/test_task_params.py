"""The task form's parameter editor: a template fills the sequence editor, groups follow the platforms in scope,
and what is typed comes back as the task's parameters (core's checks naming the parameter)."""

from __future__ import annotations

import asyncio

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input, Select, TextArea

from core.drivers.templates import TEMPLATES
from core.errors import InputError
from storage.types import HostParams
from tui.widgets.task_params import TaskParamsEditor, param_error_field


class _Host(App[None]):
    def __init__(self, params: HostParams) -> None:
        super().__init__()
        self.start = params

    def compose(self) -> ComposeResult:
        yield TaskParamsEditor(self.start, id="params")


def test_template_fills_the_editor_and_params_come_back() -> None:
    async def flow() -> None:
        app = _Host(HostParams())
        async with app.run_test(size=(100, 60)) as pilot:
            editor = app.query_one(TaskParamsEditor)
            app.query_one("#p-template", Select).value = "juniper-junos"
            await pilot.pause()
            assert app.query_one("#p-commands", TextArea).text == TEMPLATES["juniper-junos"].commands_text
            app.query_one("#p-delay", Input).value = "0"
            app.query_one("#p-settle", Input).value = "60"
            p = editor.params(HostParams(use_sudo=False))
            assert (p.template, p.commands, p.delay_time, p.settle_delay, p.use_sudo) == (
                "juniper-junos", TEMPLATES["juniper-junos"].commands_text, 0.0, 60.0, False)
            assert p.prompt == TEMPLATES["juniper-junos"].prompt

    asyncio.run(flow())


def test_groups_follow_the_platforms_in_scope() -> None:
    async def flow() -> None:
        app = _Host(HostParams())
        async with app.run_test(size=(100, 60)):
            editor = app.query_one(TaskParamsEditor)
            shown = lambda: {k: app.query_one(f"#f-{k}").display for k in ("selfchange", "sequence", "userparams")}  # noqa: E731
            editor.show_for(["custom-ssh"])
            assert shown() == {"selfchange": True, "sequence": True, "userparams": False}
            editor.show_for(["linux", "aix"])
            assert shown() == {"selfchange": True, "sequence": False, "userparams": True}
            editor.show_for([])
            assert all(shown().values())

    asyncio.run(flow())


def test_a_bad_value_names_its_parameter_and_field() -> None:
    async def flow() -> None:
        app = _Host(HostParams(create_user=True))
        async with app.run_test(size=(100, 60)):
            editor = app.query_one(TaskParamsEditor)
            app.query_one("#p-uid", Input).value = "root"
            with pytest.raises(InputError, match="^uid: ") as exc:
                editor.params(HostParams(create_user=True))
            assert param_error_field(str(exc.value), lambda m: "form") == "userparams"
            app.query_one("#p-uid", Input).value = "2001"
            app.query_one("#p-sudo", Input).value = "whoami"
            assert not app.query_one("#p-sudo", Input).validate("whoami").is_valid
            with pytest.raises(InputError, match="^sudo: "):
                editor.params(HostParams(create_user=True))

    asyncio.run(flow())


def test_mysql_entry_fields_appear_with_a_mysql_asset_and_come_back() -> None:
    from textual.widgets import Checkbox

    async def flow() -> None:
        app = _Host(HostParams())
        async with app.run_test(size=(100, 60)) as pilot:
            editor = app.query_one(TaskParamsEditor)
            editor.show_for([])
            assert not app.query_one("#f-mysql").display
            editor.show_for(["linux", "mariadb"])
            await pilot.pause()
            assert app.query_one("#f-mysql").display
            assert editor.params(HostParams()).account_host == "%"  # empty: the default entry
            app.query_one("#p-account-host", Input).value = "10.0.%"
            app.query_one("#p-all-hosts", Checkbox).value = True
            p = editor.params(HostParams())
            assert (p.account_host, p.all_hosts) == ("10.0.%", True)
            app.query_one("#p-all-hosts", Checkbox).value = False
            app.query_one("#p-account-host", Input).value = "a b"
            with pytest.raises(InputError) as err:
                editor.params(HostParams())
            assert param_error_field(str(err.value), lambda m: "") == "mysql"

    asyncio.run(flow())
