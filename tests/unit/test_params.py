"""Task parameters: command-line and TOML forms, checks that name the key, and what `task show` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import params as core_params
from core.drivers.interactive import Sequence, Step, Values, build_sequence, render
from core.drivers.base import DriverError
from core.drivers.templates import TEMPLATES
from core.errors import InputError
from core.tasks import load_task_file
from storage.types import HostParams


def test_assignments_coerce_to_the_parameter_types(tmp_path: Path) -> None:
    (tmp_path / "seq.txt").write_text("enable\n{privilege_password}\n")
    assert core_params.parse_assignment("self_change=yes") == ("self_change", True)
    assert core_params.parse_assignment("uid=2001") == ("uid", 2001)
    assert core_params.parse_assignment("recv_timeout=7.5") == ("recv_timeout", 7.5)
    assert core_params.parse_assignment("sudo=/bin/whoami,/sbin/ifconfig") == ("sudo", "/bin/whoami,/sbin/ifconfig")
    assert core_params.parse_assignment("commands=@seq.txt", tmp_path) == ("commands", "enable\n{privilege_password}\n")
    with pytest.raises(InputError, match=r"^param colour: unknown parameter \(known: commands, answers"):
        core_params.parse_assignment("colour=red")
    with pytest.raises(InputError, match=r"^uid: must be a whole number, got 'x'"):
        core_params.parse_assignment("uid=x")
    with pytest.raises(InputError, match=r"^self_change: must be true or false"):
        core_params.parse_assignment("self_change=maybe")
    with pytest.raises(InputError, match=r"^commands: cannot read .*missing.txt"):
        core_params.parse_assignment("commands=@missing.txt", tmp_path)
    with pytest.raises(InputError, match=r"expected KEY=VALUE"):
        core_params.parse_assignment("self_change")


def test_apply_maps_sudo_to_its_field_and_lists_to_text() -> None:
    p = core_params.apply(HostParams(), {"sudo": ["/bin/whoami", "/sbin/ifconfig"], "groups": "adm,staff",
                                         "create_user": True, "commands": ["a", "b"]})
    assert (p.sudo_commands, p.groups, p.create_user, p.commands) == ("/bin/whoami,/sbin/ifconfig", "adm,staff", True, "a\nb")
    assert core_params.described(p) == [("commands", "a\nb"), ("create_user", "true"), ("groups", "adm,staff"),
                                        ("sudo", "/bin/whoami,/sbin/ifconfig")]
    assert core_params.as_mapping(p)["sudo"] == "/bin/whoami,/sbin/ifconfig"
    assert HostParams.from_dict(p.to_dict()) == p


@pytest.mark.parametrize("values,field", [
    ({"recv_timeout": 0}, "recv_timeout"),
    ({"delay_time": -1}, "delay_time"),
    ({"template": "nokia"}, "template"),
    ({"answers": "x"}, "answers"),
    ({"commands": "passwd {user}"}, "commands"),
    ({"commands": "a", "answers": "(unclosed"}, "answers"),
    ({"prompt": "[#"}, "prompt"),
    ({"create_user": True, "shell": "bash"}, "shell"),
    ({"create_user": True, "home": "/"}, "home"),
    ({"create_user": True, "groups": "adm,bad group"}, "groups"),
    ({"create_user": True, "uid": 0}, "uid"),
    ({"create_user": True, "sudo": "/bin/sh;id"}, "sudo"),
    ({"sudo": "/usr/bin/id"}, "sudo"),
    ({"shell": "/bin/sh"}, "create_user"),
    ({"modify_sudo": True}, "modify_sudo"),
])
def test_validation_names_the_parameter(values: dict, field: str) -> None:
    with pytest.raises(InputError, match=rf"^{field}: "):
        core_params.validate(core_params.apply(HostParams(), values))


def test_every_template_is_a_valid_sequence() -> None:
    for t in TEMPLATES.values():
        assert len(t.commands) == len(t.answers) and t.checked_against
        core_params.validate(HostParams(template=t.name))
        core_params.validate(HostParams(commands=t.commands_text, answers=t.answers_text, prompt=t.prompt))


def test_render_refuses_line_breaks_and_nul_in_any_value_and_missing_values() -> None:
    seq = build_sequence("enable\n{privilege_password}\nusername {username} secret {password}", "", "#")
    assert render(seq, Values("alice", "pw", None, "en"))[2] == "username alice secret pw"
    for bad in ("a\nb", "a\rb", "a\0b"):
        with pytest.raises(DriverError, match="refused before anything was sent"):
            render(seq, Values("alice", bad, None, "en"))
        with pytest.raises(DriverError, match="privilege_password: contains"):
            render(seq, Values("alice", "pw", None, bad))
    with pytest.raises(DriverError, match=r"line 2 needs \{privilege_password\}"):
        render(seq, Values("alice", "pw"))
    # Braces that are not placeholders (Junos `{master}` prompts, shell `${x}`) pass through untouched.
    other = Sequence((Step("echo {master} ${HOME}"),), "#")
    assert render(other, Values("alice", "pw")) == ["echo {master} ${HOME}"]


def test_task_file_params_table(tmp_path: Path) -> None:
    f = tmp_path / "dev.toml"
    f.write_text('name = "dev"\naccounts = ["alice"]\nassets = ["sw1"]\n[params]\ntemplate = "cisco-ios"\n'
                 'settle_delay = 60\nself_change = true\nrecv_timeout = 10\n')
    spec = load_task_file(f)
    assert (spec.params.template, spec.params.settle_delay, spec.params.self_change, spec.params.recv_timeout) == \
        ("cisco-ios", 60.0, True, 10.0)
    f.write_text('name = "dev"\naccounts = ["alice"]\nassets = ["sw1"]\n[params]\nuid = "x"\n')
    with pytest.raises(InputError, match=r"dev.toml: params.uid: must be a whole number"):
        load_task_file(f)
