"""What a host account needs besides its password: the user itself (shell, home, groups, uid) and a sudoers entry.

These are shell lines the POSIX and AIX drivers put in front of their chpasswd script, so they run as root in
the same stdin-fed script with the same exit-code contract: every failure here exits before the password is
touched, with a code the driver reads as "not applied". The sudoers entry is written to a dot-named temp file
in /etc/sudoers.d (sudo skips names with a dot), checked with `visudo -cf`, and only then renamed into place:
a bad entry never becomes part of the host's sudo policy. Values were validated by core.params; they are
quoted again here because they go into a script.
"""

from __future__ import annotations

import re
import shlex

from core.drivers.base import DriverError
from storage.types import HostParams

EXIT_NO_GROUP = 98
EXIT_SUDOERS = 99
NOT_APPLIED_CODES = frozenset({EXIT_NO_GROUP, EXIT_SUDOERS})
EXIT_CREATE_FAILED = 93  # the same code as core.drivers.posix (kept here to avoid an import cycle)

GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
ABS_PATH = re.compile(r"^/[A-Za-z0-9_./+-]{0,254}$")
# One sudoers command: an absolute path and plain arguments; nothing sudoers or a shell reads specially.
SUDO_COMMAND = re.compile(r"^/[A-Za-z0-9_./+-]+( [A-Za-z0-9_./+@%-]+)*$")
MAX_UID = 2**31 - 2


def split_list(text: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c'] (empty items dropped)."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def check_user_params(params: HostParams, field_prefix: str = "") -> None:
    """DriverError naming the parameter when a user parameter cannot be used safely."""
    f = field_prefix
    if params.shell and not ABS_PATH.match(params.shell):
        raise DriverError(f"{f}shell: {params.shell!r} must be an absolute path such as /bin/bash", field="shell")
    if params.home and (not ABS_PATH.match(params.home) or params.home == "/"):
        raise DriverError(f"{f}home: {params.home!r} must be an absolute path such as /home/alice", field="home")
    for name, value in (("group", [params.group] if params.group else []), ("groups", split_list(params.groups))):
        for g in value:
            if not GROUP_NAME.match(g):
                raise DriverError(f"{f}{name}: {g!r} is not a valid group name", field=name)
    if params.uid is not None and (isinstance(params.uid, bool) or not isinstance(params.uid, int)
                                   or not 1 <= params.uid <= MAX_UID):
        raise DriverError(f"{f}uid: must be a whole number from 1 to {MAX_UID} (0 is root), got {params.uid!r}", field="uid")
    commands = split_list(params.sudo_commands)
    for c in commands:
        if not SUDO_COMMAND.match(c):
            raise DriverError(f"{f}sudo: {c!r} is not an absolute command path with plain arguments "
                              "(e.g. /bin/whoami,/sbin/ifconfig); nothing was sent to a host", field="sudo")
    if params.modify_sudo and not commands:
        raise DriverError(f"{f}modify_sudo: needs the sudo commands to write", field="modify_sudo")


def sudoers_line(username: str, params: HostParams) -> str:
    """The sudoers entry of username: the listed commands, as root, without a password."""
    return f"{username} ALL=(ALL) NOPASSWD: {', '.join(split_list(params.sudo_commands))}"


def sudoers_file(username: str) -> str:
    """Where keyturn keeps username's entry (no dot in the name: sudo would skip the file)."""
    return "/etc/sudoers.d/keyturn-" + re.sub(r"[^A-Za-z0-9_-]", "_", username)


def setup_script(username: str, params: HostParams, *, aix: bool = False) -> str:
    """Shell lines run as root before the password is set: create the user, write its sudoers entry."""
    if not (params.create_user or (params.modify_sudo and params.sudo_commands)):
        return ""
    check_user_params(params)
    if params.sudo_commands and username == "ALL":
        raise DriverError("sudo: a user named 'ALL' would give the entry to every user; refused", field="sudo")
    q_user = shlex.quote(username)
    groups = ([params.group] if params.group else []) + split_list(params.groups)
    lines = [f"if id -u {q_user} >/dev/null 2>&1; then kt_exists=1; else kt_exists=; fi\n"]
    sudo_when = []
    if params.create_user:
        sudo_when.append("[ -z \"$kt_exists\" ]")
        if groups:
            probe = "lsgroup {g} >/dev/null 2>&1" if aix else "getent group {g} >/dev/null"
            checks = "".join(
                f"  {probe.format(g=shlex.quote(g))} || {{ echo 'keyturn: group {g} does not exist on the host; "
                f"the user was not created' >&2; exit {EXIT_NO_GROUP}; }}\n" for g in groups)
            lines.append(f"if [ -z \"$kt_exists\" ]; then\n{checks}fi\n")
    if params.modify_sudo:
        sudo_when.append("[ -n \"$kt_exists\" ]")
    sudo = bool(params.sudo_commands) and bool(sudo_when)
    if sudo:
        cond = " || ".join(sudo_when)
        # Checked before the user is created, so a refused entry leaves the host as it was.
        lines.append(
            f"kt_sudo=; if {cond}; then kt_sudo=1\n"
            f"  kt_sfail() {{ rm -f \"$kt_st\"; echo \"keyturn: $1; the sudoers entry was not written\" >&2; exit {EXIT_SUDOERS}; }}\n"
            "  command -v visudo >/dev/null 2>&1 || kt_sfail 'visudo is not installed'\n"
            "  [ -d /etc/sudoers.d ] || kt_sfail '/etc/sudoers.d does not exist'\n"
            "  kt_st=$(umask 077; mktemp /etc/sudoers.d/.keyturn.XXXXXX) || kt_sfail 'cannot create a temp file'\n"
            "  trap 'rm -f \"$kt_st\"' EXIT\n"
            f"  printf '%s\\n' {shlex.quote(sudoers_line(username, params))} > \"$kt_st\" && chmod 0440 \"$kt_st\" "
            "|| kt_sfail 'cannot write the temp file'\n"
            "  kt_vout=$(visudo -cf \"$kt_st\" 2>&1) || kt_sfail \"visudo refused it: $(printf '%s' \"$kt_vout\" | tail -n 1)\"\n"
            "fi\n")
    if params.create_user:
        if aix:
            attrs = [f"shell={params.shell}" if params.shell else "", f"home={params.home}" if params.home else "",
                     f"pgrp={params.group}" if params.group else "",
                     f"groups={','.join(split_list(params.groups))}" if params.groups else "",
                     f"id={params.uid}" if params.uid is not None else ""]
            cmd = " ".join(["mkuser", *(shlex.quote(a) for a in attrs if a), q_user])
        else:
            opts = ["-m"]
            if params.shell:
                opts += ["-s", params.shell]
            if params.home:
                opts += ["-d", params.home]
            if params.group:
                opts += ["-g", params.group]
            if params.groups:
                opts += ["-G", ",".join(split_list(params.groups))]
            if params.uid is not None:
                opts += ["-u", str(params.uid)]
            cmd = "useradd " + " ".join(shlex.quote(o) for o in opts) + f" {q_user}"
        lines.append(
            f"if [ -z \"$kt_exists\" ]; then kt_uerr=$({cmd} 2>&1 >/dev/null) || {{ "
            f"echo \"keyturn: could not create the user: $(printf '%s' \"$kt_uerr\" | tail -n 1)\" >&2; "
            f"exit {EXIT_CREATE_FAILED}; }}; fi\n")
    if sudo:
        lines.append(
            f"if [ -n \"$kt_sudo\" ]; then mv -f \"$kt_st\" {shlex.quote(sudoers_file(username))} || "
            "kt_sfail 'cannot move it into place'; trap - EXIT; fi\n")
    return "".join(lines)
