"""The README's shared jump-host deployment, built inside a sandbox host, for the security tests.

Inside the host's own mount namespace (its /etc, /home, /root, /var are private overlays): a system user
`keyturn` owning /var/lib/keyturn (0700), a root-owned wrapper that fixes KEYTURN_HOME and KEYTURN_CONFIG,
a root-owned /etc/keyturn/config.toml, and the sudoers rule letting group pam-admins run the wrapper as
`keyturn` and nothing else. People log in over real SSH (so SSH_CLIENT is set) and run `sudo -u keyturn
WRAPPER ...` as the README's /usr/local/bin/keyturn does:

* alice  - in pam-admins, an enrolled operator
* mallory - in pam-admins, never enrolled (the attacker of issue 11)
* eve    - not in pam-admins

The one difference from the README: the wrapper lives in /var/lib/keyturn-bin, because /usr is shared
with the machine running the tests, and /root is made traversable in the namespace so the test
virtualenv's Python (under /root/.pyenv) can start as `keyturn`.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from tests.sandbox import SandboxHost, new_password

ROOT = Path(__file__).resolve().parent.parent.parent
WRAPPER = "/var/lib/keyturn-bin/keyturn"
CONFIG = "/etc/keyturn/config.toml"
DATA = "/var/lib/keyturn"
PEOPLE = ("alice", "mallory", "eve")

SUDOERS = f"""Defaults!{WRAPPER} env_keep += "SSH_CLIENT SSH_CONNECTION"
%pam-admins ALL=(keyturn) NOPASSWD: {WRAPPER}
"""


class Deployment:
    """A sandbox host set up per the README's sudo recipe; keyturn(user, ...) runs the command as that person."""

    def __init__(self, host: SandboxHost, config: str = "") -> None:
        self.host = host
        h = host
        for person in PEOPLE:
            h.add_user(person, new_password())
        for argv in (
            ["groupadd", "pam-admins"],
            ["usermod", "-aG", "pam-admins", "alice"],
            ["usermod", "-aG", "pam-admins", "mallory"],
            ["useradd", "--system", "--home-dir", DATA, "--create-home", "--shell", "/usr/sbin/nologin", "keyturn"],
            ["chmod", "700", DATA],
            ["chmod", "755", "/root"],
            ["install", "-d", "-m", "755", "/var/lib/keyturn-bin", "/etc/keyturn"],
        ):
            h.run(argv, check=True)
        h.write_file(WRAPPER, "#!/bin/sh\n"
                              f"export KEYTURN_HOME={DATA} KEYTURN_CONFIG={CONFIG}\n"
                              f"exec {ROOT}/.venv/bin/keyturn \"$@\"\n", mode=0o755, owner="root")
        self.write_config(config)
        h.write_file("/etc/sudoers.d/keyturn", SUDOERS, mode=0o440, owner="root")
        check = h.run(["visudo", "-cf", "/etc/sudoers.d/keyturn"])
        assert check.returncode == 0, check.stdout + check.stderr

    def write_config(self, text: str) -> None:
        """Replace the protected config file (root-owned, 0644)."""
        self.host.write_file(CONFIG, text, mode=0o644, owner="root")

    def keyturn(self, user: str, *args: str, input: str | None = None, sudo_env: str = "",
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`sudo -u keyturn WRAPPER args` run by user in an SSH session to the host."""
        command = f"sudo -n -u keyturn {sudo_env} {WRAPPER} {shlex.join(args)}"
        code, out, err = self.host.ssh_exec(user, command, input=input if input is not None else "", timeout=timeout)
        return subprocess.CompletedProcess(command, code, out, err)

    def as_root(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """keyturn run by root as the service user, the way an administrator sets the deployment up."""
        return self.host.run(["setpriv", "--reuid=keyturn", "--regid=keyturn", "--init-groups",
                              "env", f"KEYTURN_HOME={DATA}", f"KEYTURN_CONFIG={CONFIG}", "HOME=/var/lib/keyturn",
                              f"{ROOT}/.venv/bin/keyturn", *args], input=input)
