"""Errors a user can act on; the command line prints them without a traceback."""

from __future__ import annotations


class KeyturnError(Exception):
    """A user-facing error with a clear message and an exit code."""

    exit_code = 1


class ConfigError(KeyturnError):
    """The configuration file or an environment override is invalid."""

    exit_code = 2


class UnsafeSetupError(KeyturnError):
    """The data directory or master key is unsafe; keyturn refuses to start."""

    exit_code = 2


class InputError(KeyturnError):
    """Bad input: a file, a form field, a rule; the message names the field or line."""

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
