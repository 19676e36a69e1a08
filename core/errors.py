"""Errors a user can act on; the command line prints them without a traceback."""

from __future__ import annotations

# The root and the errors storage raises live in storage.errors (storage must not import core); this module is
# the one place everyone else imports any of them from.
from storage.errors import AmbiguousAccount, InputError, KeyturnError, NotFound

__all__ = ["AmbiguousAccount", "ConfigError", "DatabaseDamagedError", "DatabaseWriteError", "HostKeyChanged",
           "InputError", "KeyturnError", "NotFound", "NothingToReveal", "PermissionDenied", "UnsafeSetupError"]


class ConfigError(KeyturnError):
    """The configuration file or an environment override is invalid."""

    exit_code = 2


class UnsafeSetupError(KeyturnError):
    """The data directory or master key is unsafe; keyturn refuses to start."""

    exit_code = 2


class PermissionDenied(KeyturnError):
    """The acting person may not do this."""

    exit_code = 3


class DatabaseWriteError(KeyturnError):
    """The database could not be written (full disk, read-only file); open records are left for reconcile."""

    exit_code = 4


class DatabaseDamagedError(KeyturnError):
    """The database file is damaged, or missing while the master key says a vault existed."""

    exit_code = 2


class NothingToReveal(KeyturnError):
    """The record or account holds no secret of the kind asked for (an old secret of a first change...)."""

    exit_code = 1


class HostKeyChanged(KeyturnError):
    """The host presents a different key than the pinned one and the change was not confirmed."""

    exit_code = 5
