"""Who is acting: proven by the operating system, not typed.

Through sudo (or any time the real and effective users differ) the acting person is the invoking OS user,
named by sudo (SUDO_USER, checked against SUDO_UID) or by the real uid; `--operator` and KEYTURN_OPERATOR
are refused there. Without sudo the person runs keyturn with their own rights and holds the data directory
anyway, so a typed name is only a convenience (tests, one-person installs).
"""

from __future__ import annotations

import getpass
import os
import pwd
from collections.abc import Mapping

from core.config import ProcessIdentity
from core.errors import PermissionDenied


def _name_of_uid(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def invoking_user(identity: ProcessIdentity) -> str:
    """The OS user who started this process through sudo or a setuid program."""
    if identity.sudo_user:
        if identity.sudo_uid:
            # sudo sets both; a name that does not belong to the uid was not set by sudo.
            try:
                if pwd.getpwnam(identity.sudo_user).pw_uid != int(identity.sudo_uid):
                    raise PermissionDenied("SUDO_USER and SUDO_UID name different users; refusing to guess who acts")
            except (KeyError, ValueError):
                raise PermissionDenied("SUDO_USER names no user of this system; refusing to guess who acts") from None
        return identity.sudo_user
    if identity.sudo_uid:
        try:
            return _name_of_uid(int(identity.sudo_uid))
        except ValueError:
            raise PermissionDenied("SUDO_UID is not a number; refusing to guess who acts") from None
    return _name_of_uid(identity.real_uid)


def acting_person(explicit: str | None, env: Mapping[str, str], identity: ProcessIdentity | None = None) -> str:
    """Who is acting: the invoking OS user under sudo (a typed name refused), else --operator, KEYTURN_OPERATOR
    or the login name."""
    identity = identity or ProcessIdentity.current(env)
    if identity.elevated:
        if explicit:
            raise PermissionDenied(f"--operator is refused when keyturn runs through sudo: you act as "
                                   f"{invoking_user(identity)!r}, the user sudo names")
        if env.get("KEYTURN_OPERATOR"):
            raise PermissionDenied("KEYTURN_OPERATOR is refused when keyturn runs through sudo")
        return invoking_user(identity)
    if explicit:
        return explicit
    if env.get("KEYTURN_OPERATOR"):
        return env["KEYTURN_OPERATOR"]
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return str(os.getuid())


def require_service_identity(identity: ProcessIdentity, what: str = "the scheduler") -> None:
    """Only the service user itself (systemd's User=keyturn), never a person through sudo, may run what."""
    if identity.elevated:
        raise PermissionDenied(f"{what} runs only as keyturn's own service (systemd, User=keyturn), not through "
                               f"sudo by {invoking_user(identity)!r}")
