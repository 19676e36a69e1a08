"""AIX hosts: like POSIX, but `chpasswd -c` and AIX's own user tools.

No AIX host exists here: this driver is checked by unit tests against recorded AIX behaviour (a fake SSH
channel that answers the way AIX 7.2 does), see tests/unit/test_aix_driver.py.
"""

from __future__ import annotations

import shlex

from core.drivers import posix_users
from core.drivers.posix import EXIT_NO_USER, PosixDriver


class AixDriver(PosixDriver):
    """Driver for `aix` assets."""

    # chpasswd -c clears every password flag, ADMCHG included: without it AIX forces the user to pick a new
    # password at the next login, and the secret keyturn just stored would be thrown away by the user.
    chpasswd_args = ("-c",)

    def _limited(self, seconds: int) -> str:
        # AIX has no timeout(1); its base perl forks the script into its own process group and SIGKILLs the
        # whole group (chpasswd included) when the alarm fires.
        watchdog = ("$n=shift;$p=fork;defined $p or exit 126;if(!$p){setpgrp(0,0);exec @ARGV;exit 127}"
                    "$SIG{ALRM}=sub{kill 9,-$p;exit 137};alarm $n;waitpid($p,0);"
                    "exit($?&127?128+($?&127):$?>>8)")
        return f"perl -e '{watchdog}' {int(seconds)} "

    def _emit(self, var: str) -> str:
        # AIX /bin/sh is ksh88, where printf is an external command (its arguments would be visible in ps);
        # `print` is a ksh builtin.
        return f"print -r -- \"${var}\""

    def _user_check(self, q_user: str) -> str:
        return posix_users.setup_script(shlex.split(q_user)[0], self.params, aix=True)

    def _home_snippet(self, q_user: str) -> str:
        # AIX has no getent; lsuser prints "name home=/path".
        return (f"kt_ent=$(lsuser -a home {q_user} 2>/dev/null) || {{ echo 'keyturn: no such user on host' >&2; "
                f"exit {EXIT_NO_USER}; }}\n"
                "kt_home=${kt_ent#*home=}\n")

    def _as_user_snippet(self, q_user: str) -> str:
        # AIX has neither setpriv nor runuser; su as root asks for no password.
        return f"kt_as_user() {{ su {q_user} -c 'exec /bin/sh -c \"$KT_INNER\"'; }}\n"

    def _mktemp_snippet(self) -> str:
        # Older AIX releases ship no mktemp: create the file exclusively with noclobber instead.
        return ("kt_tmp=\"$kt_dir/.authorized_keys.keyturn.$$\"\n"
                "( set -C; : > \"$kt_tmp\" ) 2>/dev/null || kt_fail 'cannot create a temp file'\n")
