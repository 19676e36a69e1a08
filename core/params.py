"""Task parameters (`--param KEY=VALUE`, a TOML `[params]` table): their keys, types, checks and where they apply.

One table drives the command line, task files, `task show` and the app's form, so a key means the same thing
everywhere. Values are checked here before a task is saved; every error names the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError
from storage.types import HostParams

HOST_PLATFORMS = ("linux", "unix", "aix")
DEVICE_PLATFORMS = ("custom-ssh",)
ALL_PLATFORMS = HOST_PLATFORMS + DEVICE_PLATFORMS
MYSQL_PLATFORMS = ("mysql", "mariadb")
MAX_COMMANDS = 100
MAX_TEXT = 20_000


@dataclass(frozen=True)
class ParamKey:
    """One task parameter: the name users type, the HostParams field, its type, where it applies, its help."""

    key: str
    field: str
    kind: type
    platforms: tuple[str, ...]
    help: str


PARAM_KEYS: dict[str, ParamKey] = {p.key: p for p in (
    ParamKey("commands", "commands", str, DEVICE_PLATFORMS,
             "commands typed one per line; placeholders {username} {password} {login_password} {privilege_password}"),
    ParamKey("answers", "answers", str, DEVICE_PLATFORMS,
             "one regex per command, matched against its output before the next is typed (empty: the prompt)"),
    ParamKey("prompt", "prompt", str, DEVICE_PLATFORMS, "regex of the device prompt at the end of its output"),
    ParamKey("recv_timeout", "recv_timeout", float, DEVICE_PLATFORMS, "seconds to wait for each answer (default 30)"),
    ParamKey("delay_time", "delay_time", float, DEVICE_PLATFORMS, "seconds to pause before typing each command (default 2)"),
    ParamKey("template", "template", str, DEVICE_PLATFORMS, "a named sequence: cisco-ios, arista-eos, juniper-junos, "
                                                            "linux-passwd, linux-passwd-sudo, linux-passwd-su"),
    ParamKey("settle_delay", "settle_delay", float, ALL_PLATFORMS,
             "seconds to wait after a push before verifying (a device that applies slowly)"),
    ParamKey("self_change", "self_change", bool, ALL_PLATFORMS,
             "accounts whose password is in the vault log in as themselves and change it (no privileged account)"),
    ParamKey("create_user", "create_user", bool, HOST_PLATFORMS, "create the user when it is missing"),
    ParamKey("shell", "shell", str, HOST_PLATFORMS, "login shell of a created user (absolute path)"),
    ParamKey("home", "home", str, HOST_PLATFORMS, "home directory of a created user (absolute path)"),
    ParamKey("group", "group", str, HOST_PLATFORMS, "primary group of a created user (must exist)"),
    ParamKey("groups", "groups", str, HOST_PLATFORMS, "extra groups of a created user, comma-separated (must exist)"),
    ParamKey("uid", "uid", int, HOST_PLATFORMS, "user id of a created user"),
    ParamKey("sudo", "sudo_commands", str, HOST_PLATFORMS,
             "commands a created user may run with sudo, comma-separated absolute paths (/bin/whoami,/sbin/ifconfig)"),
    ParamKey("modify_sudo", "modify_sudo", bool, HOST_PLATFORMS, "also write the sudo entry of users that exist"),
    ParamKey("account_host", "account_host", str, MYSQL_PLATFORMS,
             "the 'user'@'host' entry to change: its host part (default %)"),
    ParamKey("all_hosts", "all_hosts", bool, MYSQL_PLATFORMS, "change every 'user'@'host' entry of the user name"),
)}
# Keys whose value may name a file on the command line (`commands=@FILE`).
FILE_KEYS = ("commands", "answers")


def keys_for(platform: str) -> list[str]:
    """The parameter keys that apply to assets of platform."""
    return [k for k, p in PARAM_KEYS.items() if platform in p.platforms]


def _unknown(key: str) -> InputError:
    return InputError(f"param {key}: unknown parameter (known: {', '.join(PARAM_KEYS)})")


def coerce(key: str, value: Any) -> Any:
    """value (text from a command line, or a TOML value) as the type of key; InputError naming the key."""
    p = PARAM_KEYS.get(key)
    if p is None:
        raise _unknown(key)
    if isinstance(value, list) and key in ("groups", "sudo", "commands", "answers"):
        if not all(isinstance(v, str) for v in value):
            raise InputError(f"{key}: a list must hold text only", field=key)
        return ("\n" if key in FILE_KEYS else ",").join(value)
    if p.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise InputError(f"{key}: must be true or false, got {value!r}", field=key)
    if p.kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        raise InputError(f"{key}: must be a whole number, got {value!r}", field=key)
    if p.kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value).strip())
        except ValueError:
            raise InputError(f"{key}: must be a number of seconds, got {value!r}", field=key) from None
    if not isinstance(value, str):
        raise InputError(f"{key}: must be text, got {value!r}", field=key)
    return value


def apply(params: HostParams, values: dict[str, Any]) -> HostParams:
    """params with the given user-facing keys set (coerced); InputError naming an unknown or mistyped key."""
    changes = {}
    for key, value in values.items():
        changes[PARAM_KEYS[key].field if key in PARAM_KEYS else key] = coerce(key, value)
    return dataclasses.replace(params, **changes)


def parse_assignment(text: str, base_dir: Path | None = None) -> tuple[str, Any]:
    """`KEY=VALUE` from the command line; `commands=@FILE` (and answers) reads the file. InputError names the key."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"--param {text!r}: expected KEY=VALUE")
    if key not in PARAM_KEYS:
        raise _unknown(key)
    if key in FILE_KEYS and value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            value = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{key}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})", field=key) from None
    return key, coerce(key, value)


def validate(params: HostParams) -> None:
    """InputError naming the parameter when the task's parameters cannot work on any asset."""
    from core.drivers.base import DriverError  # here, not at the top: the CLI reads PARAM_KEYS without the drivers
    from core.drivers.dbconn import check_account_host
    from core.drivers.interactive import build_sequence, check_sequence
    from core.drivers.posix_users import check_user_params
    from core.drivers.templates import TEMPLATES

    for key, lo, hi in (("recv_timeout", 0.1, 3600.0), ("delay_time", 0.0, 600.0), ("settle_delay", 0.0, 3600.0)):
        value = getattr(params, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise InputError(f"{key}: must be from {lo:g} to {hi:g} seconds, got {value!r}", field=key)
    for key in ("commands", "answers", "prompt"):
        value = getattr(params, key)
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise InputError(f"{key}: must be text of at most {MAX_TEXT} characters", field=key)
        if "\0" in value or (key == "prompt" and ("\n" in value or "\r" in value)):
            raise InputError(f"{key}: contains a line break or NUL", field=key)
    if params.template and params.template not in TEMPLATES:
        raise InputError(f"template: no template named {params.template!r} (known: {', '.join(TEMPLATES)})", field="template")
    if params.answers.strip() and not params.commands.strip():
        raise InputError("answers: given without commands", field="answers")
    if params.commands.strip():
        lines = params.commands.splitlines()
        if len(lines) > MAX_COMMANDS:
            raise InputError(f"commands: more than {MAX_COMMANDS} lines", field="commands")
        try:
            check_sequence(build_sequence(params.commands, params.answers, params.prompt or "x",
                                          recv_timeout=params.recv_timeout, delay_time=params.delay_time))
        except DriverError as exc:
            raise InputError(str(exc), field=exc.field) from None
    elif params.prompt:
        try:
            check_sequence(build_sequence("x", "", params.prompt))
        except DriverError as exc:
            raise InputError(str(exc), field=exc.field) from None
    try:
        check_user_params(params)
        if not params.all_hosts:
            check_account_host(params.account_host)
    except DriverError as exc:
        raise InputError(str(exc), field=exc.field) from None
    if (params.shell or params.home or params.group or params.groups or params.uid is not None) and not params.create_user:
        raise InputError("create_user: shell, home, group, groups and uid apply to a created user; set create_user=true", field="create_user")
    if params.sudo_commands and not (params.create_user or params.modify_sudo):
        raise InputError("sudo: applies to a created user (create_user=true) or with modify_sudo=true", field="sudo")


def described(params: HostParams) -> list[tuple[str, str]]:
    """(key, value as text) of every parameter that differs from its default, for `task show` (no secrets here)."""
    default = HostParams()
    out = []
    for key, p in PARAM_KEYS.items():
        value = getattr(params, p.field)
        if value == getattr(default, p.field):
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = f"{value:g}"
        else:
            text = str(value)
        out.append((key, text))
    return out


def as_mapping(params: HostParams) -> dict[str, Any]:
    """The non-default parameters under their user-facing keys (a TOML `[params]` table, JSON output)."""
    default = HostParams()
    return {k: getattr(params, p.field) for k, p in PARAM_KEYS.items() if getattr(params, p.field) != getattr(default, p.field)}


def check_for_platforms(params: HostParams, platforms: set[str]) -> None:
    """InputError when the task covers assets its parameters cannot change (custom-ssh without a sequence)."""
    if "custom-ssh" in platforms and not (params.commands.strip() or params.template):
        raise InputError("commands: the task covers custom-ssh assets: give commands or a template", field="commands")
