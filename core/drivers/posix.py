"""Linux and other POSIX hosts: chpasswd for passwords, an atomic authorized_keys rewrite for SSH keys.

Every remote command is a fixed script with the (validated, quoted) user name in it; the secret, the sudo
password and the public key arrive on stdin. The input ends with a random end line the script checks before
acting, so a connection cut mid-send can never set a truncated password.
"""

from __future__ import annotations

import secrets
import shlex

import paramiko

from core import ssh
from core.drivers import posix_users
from core.drivers.base import (
    AMBIGUOUS, APPLIED, KEY_STRATEGIES, NOT_APPLIED, DriverError, PushResult, check_public_line, check_username,
    seconds_left,
)
from core.ssh import Timeouts
from storage.types import HostParams

STARTED = "keyturn:started"

# Exit codes of our scripts that mean "stopped before changing anything".
EXIT_TRUNCATED = 91
EXIT_NO_USER = 92
EXIT_CREATE_FAILED = 93
EXIT_NO_HOME = 94
EXIT_SYMLINK = 95
EXIT_SSH_DIR = 96
EXIT_WRITE = 97
_NOT_APPLIED_CODES = {EXIT_TRUNCATED, EXIT_NO_USER, EXIT_CREATE_FAILED, EXIT_NO_HOME, EXIT_SYMLINK, EXIT_SSH_DIR,
                      EXIT_WRITE} | posix_users.NOT_APPLIED_CODES


class PosixDriver:
    """Driver for `linux` and `unix` assets over one privileged SSH connection."""

    chpasswd_args: tuple[str, ...] = ()

    def __init__(self, client: paramiko.SSHClient, *, login_user: str, params: HostParams = HostParams(),
                 become: str | None = None, timeouts: Timeouts = Timeouts(),
                 key_marker: str | None = None, login_password: str | None = None) -> None:
        self.client = client
        self.login_user = login_user
        self.params = params
        self.become = become or None
        self.timeouts = timeouts
        if key_marker is None:
            from core.secretgen import KEY_MARKER

            key_marker = KEY_MARKER
        self.key_marker = key_marker
        self._become_checked = False
        self._deadline: float | None = None  # of the change being pushed (epoch seconds)
        # sudo asks for the user's own password by default: used only once `sudo -n` says one is required.
        self._fallback_become = None if become else (login_password or None)

    # -- how commands reach root -------------------------------------------------------------------
    @property
    def _direct(self) -> bool:
        return self.login_user == "root" or not self.params.use_sudo

    def _limited(self, seconds: int) -> str:
        """The command prefix that makes the host itself kill the change (and every process it started)
        after seconds: a push whose end we never see still ends by the deadline its record stores."""
        # timeout puts the script in its own process group and SIGKILLs the whole group (chpasswd, PAM helpers).
        return f"timeout -s KILL {int(seconds)} "

    def _wrap(self, script: str, seconds: int | None = None) -> str:
        """The command line running script as root: directly, via `sudo -n`, or `sudo -S` fed on stdin.

        seconds: the deadline the host enforces; inside sudo, so the limit runs as root and can kill root's
        processes.
        """
        limit = self._limited(seconds) if seconds is not None else ""
        if self._direct:
            return limit + "sh -c " + shlex.quote(script)
        if self.become:
            return "sudo -S -p '' -- " + limit + "sh -c " + shlex.quote(script)
        return "sudo -n -- " + limit + "sh -c " + shlex.quote(script)

    def _stdin(self, payload_lines: list[str], begin: str, end: str) -> str:
        lines = [begin, *payload_lines, end]
        if self.become and not self._direct:
            # sudo reads the password byte by byte and leaves the rest; when it needs none (NOPASSWD, cached),
            # the script sees the password first and skips it up to the begin line.
            lines.insert(0, self.become)
        return "".join(line + "\n" for line in lines)

    def _script_head(self, begin: str) -> str:
        return (
            f"echo {STARTED}\n"
            "IFS= read -r kt_first || kt_first=\n"
            f"if [ \"$kt_first\" != {begin} ]; then IFS= read -r kt_first || kt_first=; fi\n"
            f"if [ \"$kt_first\" != {begin} ]; then echo 'keyturn: input was cut short; nothing changed' >&2; "
            f"exit {EXIT_TRUNCATED}; fi\n"
            "kt_first=\n"
        )

    def _emit(self, var: str) -> str:
        """A shell builtin that writes $var and a newline (a builtin, so the value never reaches an argv)."""
        return f"printf '%s\\n' \"${var}\""

    def _check_become(self) -> PushResult | None:
        """Once per connection: does sudo take the become password? Stops a wrong one early and cleanly."""
        if self._direct or not self.become or self._become_checked:
            return None
        try:
            code, _out, err = ssh.run(self.client, "sudo -S -p '' -v", self.become + "\n", self.timeouts.command)
        except ssh.SSHError as exc:
            return PushResult(NOT_APPLIED, f"sudo check failed: {exc}")
        if code != 0:
            reason = ssh.scrub(err.strip().splitlines()[-1] if err.strip() else f"exit {code}", [self.become])
            return PushResult(NOT_APPLIED, f"sudo refused {self.login_user}: {reason}")
        self._become_checked = True
        return None

    def _execute(self, script: str, payload: list[str], secrets_in_play: list[str | None]) -> tuple[int, str, str] | PushResult:
        """Run script as root with payload lines on stdin; a PushResult when it never ran or its end is unknown."""
        result = self._execute_once(script, payload, secrets_in_play)
        if (not isinstance(result, PushResult) and self._fallback_become and STARTED not in result[1]
                and "password is required" in result[2]):
            # Nothing ran (sudo stopped first), so trying again with the login password is safe.
            self.become, self._fallback_become = self._fallback_become, None
            result = self._execute_once(script, payload, secrets_in_play)
        return result

    def _execute_once(self, script: str, payload: list[str],
                      secrets_in_play: list[str | None]) -> tuple[int, str, str] | PushResult:
        early = self._check_become()
        if early is not None:
            return early
        seconds = seconds_left(self._deadline, self.timeouts)
        if seconds < 1:
            return PushResult(NOT_APPLIED, "the change's deadline passed before it could start on the host")
        begin, end = "kt-begin-" + secrets.token_hex(8), "kt-end-" + secrets.token_hex(8)
        full = self._script_head(shlex.quote(begin)) + script.replace("@END@", shlex.quote(end))
        scrub_list = [*secrets_in_play, self.become, self._fallback_become]
        try:
            code, out, err = ssh.run(self.client, self._wrap(full, seconds), self._stdin(payload, begin, end),
                                     self.timeouts.command)
        except ssh.CommandNotStarted as exc:
            return PushResult(NOT_APPLIED, ssh.scrub(str(exc), scrub_list))
        except ssh.CommandLost as exc:
            return PushResult(AMBIGUOUS, ssh.scrub(str(exc), scrub_list), in_flight=True)
        return code, ssh.scrub(out, scrub_list), ssh.scrub(err, scrub_list)

    def _refused(self, code: int, out: str, err: str) -> PushResult | None:
        """The not-applied outcomes: root was never reached, or our script stopped before changing anything."""
        if STARTED not in out:
            how = "sudo" if not self._direct else "the remote shell"
            text = _last_line(err) or f"exit {code}"
            return PushResult(NOT_APPLIED, f"{how} refused to run the change as root for {self.login_user}: {text}")
        if code == EXIT_NO_USER:
            return PushResult(NOT_APPLIED, "no such user on host")
        if code in _NOT_APPLIED_CODES:
            return PushResult(NOT_APPLIED, _last_line(err).removeprefix("keyturn: ") or f"exit {code}")
        return None

    def _push(self, script: str, payload: list[str], secrets_in_play: list[str | None], failed: str) -> PushResult:
        """Run a change script and judge it: not applied (never reached root or stopped early), applied,
        or ambiguous (the script ran its change and failed: only a login can say what the host holds)."""
        result = self._execute(script, payload, secrets_in_play)
        if isinstance(result, PushResult):
            return result
        code, out, err = result
        refused = self._refused(code, out, err)
        if refused is not None:
            return refused
        if code != 0:
            return PushResult(AMBIGUOUS, f"{failed} (exit {code}): {_last_line(err) or 'no message'}")
        return PushResult(APPLIED)

    # -- passwords ---------------------------------------------------------------------------------
    def _user_check(self, q_user: str) -> str:
        """Shell lines run before chpasswd: create a missing user, write its sudoers entry (posix_users)."""
        return posix_users.setup_script(shlex.split(q_user)[0], self.params)

    def _chpasswd_command(self) -> str:
        return " ".join(shlex.quote(p) for p in (self.params.chpasswd_path or "chpasswd", *self.chpasswd_args))

    def change_password(self, username: str, new_password: str, *, deadline: float | None = None) -> PushResult:
        """Set username's password with chpasswd; the `user:password` line goes on stdin only."""
        check_username(username)
        self._deadline = deadline
        if not new_password or "\n" in new_password or "\r" in new_password or "\0" in new_password:
            raise DriverError("the new password must be a single non-empty line")
        q_user = shlex.quote(username)
        script = (
            "IFS= read -r kt_line || kt_line=\n"
            "IFS= read -r kt_end || kt_end=\n"
            f"if [ \"$kt_end\" != @END@ ]; then echo 'keyturn: input was cut short; nothing changed' >&2; "
            f"exit {EXIT_TRUNCATED}; fi\n"
            f"{self._user_check(q_user)}"
            f"{self._emit('kt_line')} | {self._chpasswd_command()} && exit 0\n"
            # chpasswd changes nothing for an unknown user; asking only after a failure saves a process per account.
            f"kt_rc=$?; if ! id -u {q_user} >/dev/null 2>&1; then echo 'keyturn: no such user on host' >&2; "
            f"exit {EXIT_NO_USER}; fi; exit $kt_rc\n"
        )
        # chpasswd that ran and failed normally changes nothing, but only a login can tell for sure.
        return self._push(script, [f"{username}:{new_password}"], [new_password], "chpasswd failed")

    # -- SSH keys ----------------------------------------------------------------------------------
    def _home_snippet(self, q_user: str) -> str:
        """Shell lines setting kt_home to the user's home directory, or exiting EXIT_NO_USER."""
        return (f"kt_ent=$(getent passwd {q_user}) || {{ echo 'keyturn: no such user on host' >&2; exit {EXIT_NO_USER}; }}\n"
                f"kt_home=$({self._emit('kt_ent')} | cut -d: -f6)\n")

    def _mktemp_snippet(self) -> str:
        """Shell lines creating a fresh private temp file kt_tmp in $kt_dir."""
        return "kt_tmp=$(mktemp \"$kt_dir/.authorized_keys.keyturn.XXXXXX\") || kt_fail 'cannot create a temp file'\n"

    def _as_user_snippet(self, q_user: str) -> str:
        """Shell lines defining kt_as_user: run `/bin/sh -c "$KT_INNER"` as the user, never as root.

        The script in KT_INNER comes from the environment (not from the user's shell syntax), so `su` works
        whatever login shell the user has, as long as it can start /bin/sh.
        """
        return (
            "if command -v setpriv >/dev/null 2>&1; then\n"
            "  kt_as_user() { setpriv --reuid=\"$kt_uid\" --regid=\"$kt_gid\" --init-groups -- /bin/sh -c \"$KT_INNER\"; }\n"
            "elif command -v runuser >/dev/null 2>&1; then\n"
            f"  kt_as_user() {{ runuser -u {q_user} -- /bin/sh -c \"$KT_INNER\"; }}\n"
            "else\n"
            f"  kt_as_user() {{ su {q_user} -c 'exec /bin/sh -c \"$KT_INNER\"'; }}\n"
            "fi\n"
        )

    def _user_file_script(self, keep: str) -> str:
        """The part run as the target user: ~/.ssh, a temp file, mode 0600, rename over authorized_keys.

        As that user, a symbolic link or a swapped file in ~/.ssh can only lead where the user could write
        anyway: nothing here runs with more rights than the account whose keys change.
        """
        return (
            "IFS= read -r kt_key || kt_key=\n"
            "IFS= read -r kt_dir || kt_dir=\n"
            f"kt_fail() {{ echo \"keyturn: $1\" >&2; exit {EXIT_WRITE}; }}\n"
            "kt_file=\"$kt_dir/authorized_keys\"\n"
            "umask 077\n"
            f"if [ ! -d \"$kt_dir\" ] && [ ! -L \"$kt_dir\" ]; then mkdir -m 700 \"$kt_dir\" || "
            f"{{ echo 'keyturn: cannot create ~/.ssh' >&2; exit {EXIT_SSH_DIR}; }}; fi\n"
            "if [ -L \"$kt_dir\" ] || [ -L \"$kt_file\" ]; then "
            f"echo 'keyturn: refusing to write through a symbolic link (~/.ssh or authorized_keys)' >&2; exit {EXIT_SYMLINK}; fi\n"
            f"chmod 700 \"$kt_dir\" || {{ echo 'keyturn: cannot set the mode of ~/.ssh' >&2; exit {EXIT_SSH_DIR}; }}\n"
            f"{self._mktemp_snippet()}"
            "trap 'rm -f \"$kt_tmp\"' EXIT\n"
            # grep exits 1 when it keeps no line; 2 means it could not read the file: never drop keys then.
            f"{{ {keep}; }} > \"$kt_tmp\"; kt_rc=$?\n"
            "if [ $kt_rc -gt 1 ]; then kt_fail 'cannot read the current authorized_keys'; fi\n"
            f"{self._emit('kt_key')} >> \"$kt_tmp\" || kt_fail 'cannot write the new authorized_keys'\n"
            "chmod 600 \"$kt_tmp\" || kt_fail 'cannot set the mode of the new authorized_keys'\n"
            "mv -f \"$kt_tmp\" \"$kt_file\" || kt_fail 'cannot replace authorized_keys'\n"
            "trap - EXIT\n"
        )

    def install_key(self, username: str, public_line: str, strategy: str, *,
                    deadline: float | None = None) -> PushResult:
        """Rewrite username's authorized_keys as that user: temp file, mode 0600, rename over.

        Root only finds the user and, when the home belongs to root, creates ~/.ssh for the user there; every
        file operation inside a directory the user controls runs with the user's own rights (a root process
        writing, chown-ing or chmod-ing by name there can be raced with symbolic links into any file).
        """
        check_username(username)
        self._deadline = deadline
        check_public_line(public_line)
        if strategy not in KEY_STRATEGIES:
            raise DriverError(f"ssh key strategy must be one of {', '.join(KEY_STRATEGIES)}, got {strategy!r}")
        q_user = shlex.quote(username)
        keep = {
            "replace-all": ":",
            # Keep every line except ones keyturn pushed (they carry the marker in their comment).
            "replace-ours": f"if [ -f \"$kt_file\" ]; then grep -vF -e {shlex.quote(self.key_marker)} \"$kt_file\"; fi",
            "append": "if [ -f \"$kt_file\" ]; then grep -vxF -e \"$kt_key\" \"$kt_file\"; fi",
        }[strategy]
        script = (
            "IFS= read -r kt_key || kt_key=\n"
            "IFS= read -r kt_end || kt_end=\n"
            f"if [ \"$kt_end\" != @END@ ]; then echo 'keyturn: input was cut short; nothing changed' >&2; "
            f"exit {EXIT_TRUNCATED}; fi\n"
            f"{self._home_snippet(q_user)}"
            f"kt_uid=$(id -u {q_user}) && kt_gid=$(id -g {q_user}) || "
            f"{{ echo 'keyturn: cannot read the ids of the user' >&2; exit {EXIT_WRITE}; }}\n"
            f"if [ -z \"$kt_home\" ] || [ ! -d \"$kt_home\" ]; then echo \"keyturn: home directory $kt_home does not exist\" >&2; "
            f"exit {EXIT_NO_HOME}; fi\n"
            "kt_dir=\"$kt_home/.ssh\"\n"
            # Who may change entries of the home decides who may create ~/.ssh in it: the user in their own
            # home; root in a home only root can write (mkdir, then chown -h: never follows a link); nobody
            # when a third party could swap entries under root's feet.
            "set -f; set -- $(ls -dn \"$kt_home\"); set +f\n"
            "kt_perm=$1; kt_owner=$3\n"
            "if [ \"$kt_owner\" != \"$kt_uid\" ]; then\n"
            "  case $kt_perm in\n"
            "    ?????w*|????????w*) kt_unsafe=1;;\n"
            "    *) kt_unsafe=;;\n"
            "  esac\n"
            "  if [ \"$kt_owner\" != 0 ] || [ -n \"$kt_unsafe\" ]; then "
            f"echo \"keyturn: home directory $kt_home can be changed by others than the user\" >&2; exit {EXIT_NO_HOME}; fi\n"
            "  if [ ! -d \"$kt_dir\" ] && [ ! -L \"$kt_dir\" ]; then\n"
            "    mkdir -m 700 \"$kt_dir\" && chown -h \"$kt_uid:$kt_gid\" \"$kt_dir\" || "
            f"{{ echo 'keyturn: cannot create ~/.ssh' >&2; exit {EXIT_SSH_DIR}; }}\n"
            "  fi\n"
            "fi\n"
            f"KT_INNER={shlex.quote(self._user_file_script(keep))}; export KT_INNER\n"
            f"{self._as_user_snippet(q_user)}"
            # A trial run first: when the switch to the user fails, nothing has been touched yet.
            "KT_REAL=$KT_INNER; KT_INNER=:\n"
            f"kt_as_user </dev/null >/dev/null 2>&1 || {{ echo 'keyturn: cannot run as the user on this host (setpriv, runuser or su)' >&2; exit {EXIT_WRITE}; }}\n"
            "KT_INNER=$KT_REAL\n"
            f"{{ {self._emit('kt_key')}; {self._emit('kt_dir')}; }} | kt_as_user\n"
        )
        return self._push(script, [public_line], [], "key install failed")

    # -- other root commands (heartbeat's lock check, dependency steps) --------------------------------
    def run_as_root(self, script: str, payload: list[str], secrets_in_play: list[str | None]) -> tuple[int, str, str] | PushResult:
        """Run a fixed script as root; payload lines, then the end line (checked by the script as @END@), on stdin.

        Returns (exit, stdout, stderr) scrubbed of the secrets, or a PushResult when it never ran or its end is unknown.
        """
        return self._execute(script, payload, secrets_in_play)

    def reached_root(self, out: str) -> bool:
        """Whether a run_as_root output shows the script started as root (sudo did not stop it)."""
        return STARTED in out

    def close(self) -> None:
        """Close the privileged connection."""
        self.client.close()


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
