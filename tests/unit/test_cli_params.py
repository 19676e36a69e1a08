"""`keyturn task create/edit --param KEY=VALUE`, `[params]` in task files, and `task show` printing them."""

from __future__ import annotations

import json
from pathlib import Path


def test_params_on_the_command_line_and_in_a_task_file(keyturn_cli, tmp_path: Path) -> None:  # noqa: ANN001
    keyturn_cli("asset", "add", "sw1", "--platform", "custom-ssh", "--address", "127.0.0.9", "--port", "2222", check=True)
    seq = tmp_path / "seq.txt"
    seq.write_text("enable\n{privilege_password}\nusername {username} secret {password}\n")
    keyturn_cli("task", "create", "dev", "--accounts", "alice", "--asset", "sw1", "--param", "template=cisco-ios",
                "--param", f"commands=@{seq}", "--param", "settle_delay=30", "--param", "self_change=true", check=True)
    out = keyturn_cli("task", "show", "dev", check=True).stdout
    assert "param commands: enable\n  {privilege_password}\n  username {username} secret {password}\n" in out
    assert "param template: cisco-ios\nparam settle_delay: 30\nparam self_change: true\n" in out
    data = json.loads(keyturn_cli("task", "show", "dev", "--json", check=True).stdout)
    assert data["params"]["settle_delay"] == 30.0 and data["params"]["template"] == "cisco-ios"

    keyturn_cli("task", "edit", "dev", "--param", "settle_delay=0", "--param", "recv_timeout=5", check=True)
    out = keyturn_cli("task", "show", "dev", check=True).stdout
    assert "param settle_delay" not in out and "param recv_timeout: 5" in out and "param template: cisco-ios" in out

    bad = keyturn_cli("task", "create", "bad", "--accounts", "alice", "--asset", "sw1", "--param", "colour=red")
    assert bad.returncode == 2 and "param colour: unknown parameter" in bad.stderr
    none = keyturn_cli("task", "create", "bad", "--accounts", "alice", "--asset", "sw1")
    assert none.returncode == 2 and "commands: the task covers custom-ssh assets" in none.stderr

    f = tmp_path / "hosts.toml"
    f.write_text('name = "onboard"\naccounts = ["newbie"]\nassets = ["sw1"]\n[params]\ntemplate = "linux-passwd-sudo"\n'
                 'create_user = true\nshell = "/bin/sh"\ngroups = ["adm", "staff"]\nuid = 23456\n'
                 'sudo = ["/usr/bin/whoami", "/usr/bin/id"]\n')
    keyturn_cli("task", "create", "--from", str(f), check=True)
    out = keyturn_cli("task", "show", "onboard", check=True).stdout
    assert "param groups: adm,staff\nparam uid: 23456\nparam sudo: /usr/bin/whoami,/usr/bin/id\n" in out
