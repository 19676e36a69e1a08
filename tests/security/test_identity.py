"""Finding 1 (identity): under sudo the acting person is the invoking OS user; a typed name is refused."""

from __future__ import annotations

import pwd

import pytest

from core.config import ProcessIdentity
from core.errors import PermissionDenied
from core.identity import acting_person, require_service_identity

ROOT_UID = 0
NOBODY = pwd.getpwnam("nobody")


def test_through_sudo_the_person_is_who_sudo_names() -> None:
    via_sudo = ProcessIdentity(real_uid=990, effective_uid=990, sudo_user="nobody", sudo_uid=str(NOBODY.pw_uid))
    assert acting_person(None, {}, via_sudo) == "nobody"
    with pytest.raises(PermissionDenied, match="--operator is refused .* you act as 'nobody'"):
        acting_person("alice", {}, via_sudo)
    with pytest.raises(PermissionDenied, match="KEYTURN_OPERATOR is refused"):
        acting_person(None, {"KEYTURN_OPERATOR": "alice"}, via_sudo)


def test_a_sudo_user_that_does_not_match_sudo_uid_is_refused() -> None:
    forged = ProcessIdentity(real_uid=990, effective_uid=990, sudo_user="root", sudo_uid=str(NOBODY.pw_uid))
    with pytest.raises(PermissionDenied, match="different users"):
        acting_person(None, {}, forged)


def test_setuid_without_sudo_names_the_real_user() -> None:
    setuid = ProcessIdentity(real_uid=NOBODY.pw_uid, effective_uid=990)
    assert acting_person(None, {}, setuid) == "nobody"


def test_without_sudo_a_typed_name_is_kept() -> None:
    plain = ProcessIdentity(real_uid=ROOT_UID, effective_uid=ROOT_UID)
    assert acting_person("alice", {}, plain) == "alice"
    assert acting_person(None, {"KEYTURN_OPERATOR": "bob"}, plain) == "bob"


def test_only_the_service_itself_runs_the_scheduler() -> None:
    require_service_identity(ProcessIdentity(real_uid=990, effective_uid=990))
    with pytest.raises(PermissionDenied, match="not through sudo by 'nobody'"):
        require_service_identity(ProcessIdentity(990, 990, "nobody", str(NOBODY.pw_uid)))
