"""The root of keyturn's error tree, down here because storage raises some of it and must not import core.

core.errors re-exports every class; everyone else imports them from there.
"""

from __future__ import annotations


class KeyturnError(Exception):
    """A user-facing error with a clear message and an exit code."""

    exit_code = 1


class InputError(KeyturnError):
    """Bad input: a file, a form field, a rule. `field` names the field (a front end puts the message next to it);
    `line` the line of the file it is about; the message says both in words too."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.line = line


class NotFound(KeyturnError, LookupError):
    """A named object (asset, account, task, record, operator...) does not exist."""

    exit_code = 1


class AmbiguousAccount(NotFound):
    """A user has both a password and an SSH key account on the asset and the secret type was not named."""
