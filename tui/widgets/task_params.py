"""The task form's platform parameters: self-change (any platform), the custom-ssh sequence editor with its
template choice, and the user parameters of linux/unix/aix hosts. Each group is shown only when an asset of a
platform it applies to is in the task's scope (all of them while nothing is chosen yet).

Every value is checked by core.params, the same checks the command line and TOML task files get.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, TextArea

from core import params as core_params
from core.drivers.templates import TEMPLATES
from core.errors import InputError
from storage.types import HostParams
from tui.widgets.validators import CoreCheck

# Which form field (error line) each parameter's errors belong to.
PARAM_FIELDS: dict[str, str] = {
    **{k: "sequence" for k in ("commands", "answers", "prompt", "recv_timeout", "delay_time", "template")},
    **{k: "userparams" for k in ("shell", "home", "group", "groups", "uid", "sudo", "modify_sudo", "create_user")},
    **{k: "selfchange" for k in ("self_change", "settle_delay")},
    **{k: "mysql" for k in ("account_host", "all_hosts")},
}
GROUP_PLATFORMS = {
    "selfchange": core_params.ALL_PLATFORMS,
    "sequence": core_params.DEVICE_PLATFORMS,
    "userparams": core_params.HOST_PLATFORMS,
}
_TEXT_INPUTS = {"account_host": "p-account-host", "shell": "p-shell", "home": "p-home", "group": "p-group", "groups": "p-groups", "sudo": "p-sudo",
                "prompt": "p-prompt"}
_NUMBER_INPUTS = {"settle_delay": "p-settle", "recv_timeout": "p-recv", "delay_time": "p-delay", "uid": "p-uid"}


def _check(key: str, create_user: bool = True) -> CoreCheck:
    """A validator running core's check of one parameter (set alone on otherwise default parameters)."""

    def check(value: str) -> None:
        if not value.strip():
            return
        base = HostParams(create_user=create_user, modify_sudo=key == "sudo")
        core_params.validate(core_params.apply(base, {key: value.strip()}))

    return CoreCheck(check)


def _field(key: str, title: str, *widgets: Widget) -> Vertical:
    error = Label("", markup=False, id=f"err-{key}", classes="field-error")
    error.display = False
    return Vertical(Label(title, classes="field-title"), *widgets, error, id=f"f-{key}", classes="field")


class TaskParamsEditor(Vertical):
    """Self-change, the custom-ssh sequence and host user parameters of one task."""

    DEFAULT_CSS = """
    TaskParamsEditor { height: auto; }
    TaskParamsEditor TextArea { height: 6; }
    """

    def __init__(self, params: HostParams, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.initial = params

    def compose(self) -> ComposeResult:
        p = self.initial
        num = lambda v: "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
        yield _field(
            "selfchange", "Self-change and verification (any platform)",
            Checkbox("accounts log in as themselves to change their password (self-change)", p.self_change,
                     id="p-self"),
            Input(num(p.settle_delay) if p.settle_delay else "", id="p-settle", classes="short",
                  placeholder="settle delay s", validators=[_check("settle_delay")]))
        yield _field(
            "sequence", "Command sequence (custom-ssh)",
            Select([(f"{t.name}: {t.title}", t.name) for t in TEMPLATES.values()], value=p.template or Select.NULL,
                   prompt="template (fills the editor)", id="p-template"),
            Label("commands, one per line: {username} {password} {login_password} {privilege_password}",
                  classes="field-note"),
            TextArea(p.commands, id="p-commands", soft_wrap=False, show_line_numbers=True),
            Label("answers: one regex per command (empty line: wait for the prompt)", classes="field-note"),
            TextArea(p.answers, id="p-answers", soft_wrap=False, show_line_numbers=True),
            Horizontal(Input(p.prompt, id="p-prompt", placeholder="prompt regex", validators=[_check("prompt")]),
                       Input(num(p.recv_timeout), id="p-recv", classes="short", placeholder="answer timeout s",
                             validators=[_check("recv_timeout")]),
                       Input(num(p.delay_time), id="p-delay", classes="short", placeholder="delay s",
                             validators=[_check("delay_time")]),
                       classes="inline"))
        yield _field(
            "userparams", "User parameters (linux/unix/aix: a user created when missing)",
            Horizontal(Input(p.shell, id="p-shell", placeholder="shell /bin/bash", validators=[_check("shell")]),
                       Input(p.home, id="p-home", placeholder="home /home/NAME", validators=[_check("home")]),
                       classes="inline"),
            Horizontal(Input(p.group, id="p-group", placeholder="primary group", validators=[_check("group")]),
                       Input(p.groups, id="p-groups", placeholder="groups adm,staff", validators=[_check("groups")]),
                       Input(num(p.uid), id="p-uid", classes="short", placeholder="uid",
                             validators=[_check("uid")]),
                       classes="inline"),
            Input(p.sudo_commands, id="p-sudo", placeholder="sudo commands /bin/whoami,/sbin/ifconfig",
                  validators=[_check("sudo")]),
            Checkbox("also write the sudo entry of users that exist (modify sudo)", p.modify_sudo, id="p-modify-sudo"))
        mysql = _field(
            "mysql", "MySQL/MariaDB entry ('user'@'host')",
            Input("" if p.account_host == "%" else p.account_host, id="p-account-host",
                  placeholder="account host (default %)", validators=[_check("account_host")]),
            Checkbox("every 'user'@'host' entry of the name (all hosts)", p.all_hosts, id="p-all-hosts"))
        mysql.display = False  # only once the task covers a mysql or mariadb asset (see show_for)
        yield mysql

    # -- reactions ---------------------------------------------------------------------------------
    @on(Select.Changed, "#p-template")
    def _template_chosen(self, event: Select.Changed) -> None:
        """Picking a template puts its sequence in the editor, to use as it is or edit."""
        if event.value is Select.NULL or event.value == self.initial.template and self.initial.commands:
            return
        t = TEMPLATES[str(event.value)]
        self.query_one("#p-commands", TextArea).text = t.commands_text
        self.query_one("#p-answers", TextArea).text = t.answers_text
        self.query_one("#p-prompt", Input).value = t.prompt

    def show_for(self, platforms: Iterable[str]) -> None:
        """Show the groups that apply to these platforms (all of them when the scope is still empty)."""
        scope = set(platforms)
        for key, applies in GROUP_PLATFORMS.items():
            self.query_one(f"#f-{key}").display = not scope or bool(scope & set(applies))
        self.query_one("#f-mysql").display = bool(scope & set(core_params.MYSQL_PLATFORMS))

    # -- reading -----------------------------------------------------------------------------------
    def values(self) -> dict[str, object]:
        """The parameters as typed, under their user-facing keys (empty text: the default)."""
        out: dict[str, object] = {
            "self_change": self.query_one("#p-self", Checkbox).value,
            "modify_sudo": self.query_one("#p-modify-sudo", Checkbox).value,
            "all_hosts": self.query_one("#p-all-hosts", Checkbox).value,
            "commands": self.query_one("#p-commands", TextArea).text,
            "answers": self.query_one("#p-answers", TextArea).text,
        }
        template = self.query_one("#p-template", Select).value
        out["template"] = "" if template is Select.NULL else str(template)
        for key, wid in {**_TEXT_INPUTS, **_NUMBER_INPUTS}.items():
            text = self.query_one(f"#{wid}", Input).value.strip()
            if text or key in _TEXT_INPUTS:
                out[key] = text
        if "uid" not in out:
            out["uid"] = None
        out["account_host"] = out.get("account_host") or "%"
        return out

    def params(self, base: HostParams) -> HostParams:
        """base with these parameters applied; InputError names the parameter (see PARAM_FIELDS)."""
        values = self.values()
        uid = values.pop("uid")
        defaults = HostParams()
        for key in ("settle_delay", "recv_timeout", "delay_time"):
            values.setdefault(key, getattr(defaults, key))
        params = core_params.apply(base, values)
        params = dataclasses.replace(params, uid=core_params.coerce("uid", uid) if uid is not None else None)
        core_params.validate(params)
        return params


def param_error_field(message: str, fallback: Callable[[str], str]) -> str:
    """The form field of a core error about a parameter, else what fallback says."""
    head = message.split(":", 1)[0].strip()
    return PARAM_FIELDS.get(head) or fallback(message)


__all__ = ["TaskParamsEditor", "PARAM_FIELDS", "param_error_field", "InputError"]
