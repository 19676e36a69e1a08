"""Account (user) names: one rule for every way a name comes in (CLI, import, task form, drivers).

A user name ends up in a remote command line, in chpasswd's `user:password` line and in key-install
scripts, so it must hold nothing a shell, chpasswd or sudo would read specially. The rule is POSIX's
portable user name, as useradd takes it: a letter or '_' first, then letters, digits, '_', '.' or '-',
at most 32 characters, and a final '$' for Samba machine accounts.
"""

from __future__ import annotations

import re

USERNAME_RULE = "letters, digits, '_', '.', '-'; it starts with a letter or '_' and has at most 32 characters"
_USERNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


def is_username(value: object) -> bool:
    """Whether value is a user name keyturn can put in a remote command."""
    return isinstance(value, str) and _USERNAME.fullmatch(value) is not None


def check_username(value: str, what: str = "username") -> str:
    """value when it is a safe user name; ValueError naming what (the field or variable) otherwise."""
    if not value:
        raise ValueError(f"{what}: is empty")
    if not is_username(value):
        raise ValueError(f"{what}: {value!r} is not a valid user name ({USERNAME_RULE})")
    return value
