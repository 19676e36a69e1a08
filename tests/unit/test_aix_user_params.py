"""User parameters on AIX, against the recorded-AIX fake of test_aix_driver (mkuser attributes, lsgroup)."""

from __future__ import annotations

from pathlib import Path

from core.drivers.base import APPLIED, NOT_APPLIED
from storage.types import HostParams
from tests.unit.test_aix_driver import PW, FakeAix, _driver

# lsgroup on AIX 7.2: exit 0 for a known group, else "3004-687 Group "x" does not exist." and exit 2.
LSGROUP = r"""#!/bin/sh
echo "lsgroup $*" >> "$AIX/argv.log"
case $1 in staff|security) echo "$1 id=1";; *) echo "3004-687 Group \"$1\" does not exist." >&2; exit 2;; esac
"""


# mkuser [attr=value ...] user: the user name comes last.
MKUSER = r"""#!/bin/sh
echo "mkuser $*" >> "$AIX/argv.log"
for last in "$@"; do :; done
echo "$last" >> "$AIX/users"; mkdir -p "$AIX/home/$last"
"""


def _host(tmp_path: Path) -> FakeAix:
    host = FakeAix(tmp_path, [])
    for name, body in (("lsgroup", LSGROUP), ("mkuser", MKUSER)):
        (host.bin / name).write_text(body)
        (host.bin / name).chmod(0o755)
    return host


def test_mkuser_gets_the_user_parameters_as_aix_attributes(tmp_path: Path) -> None:
    host = _host(tmp_path)
    params = HostParams(create_user=True, shell="/usr/bin/ksh", home="/home/carol", group="staff", groups="security",
                        uid=3001)
    result = _driver(host, params=params).change_password("carol", PW)
    assert result.state == APPLIED, result.error
    assert "mkuser shell=/usr/bin/ksh home=/home/carol pgrp=staff groups=security id=3001 carol" in host.argv_log()
    assert host.passwords() == [f"carol:{PW}:"]


def test_a_missing_group_is_named_before_mkuser_runs(tmp_path: Path) -> None:
    host = _host(tmp_path)
    result = _driver(host, params=HostParams(create_user=True, groups="security,dba")).change_password("carol", PW)
    assert (result.state, result.error) == (NOT_APPLIED, "group dba does not exist on the host; the user was not created")
    assert "mkuser" not in host.argv_log() and host.passwords() == []
