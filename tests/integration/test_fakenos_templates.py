"""The device templates driven against fakenos (PyPI), which serves IOS / EOS / Junos prompts over SSH on loopback.

What this proves: keyturn's custom-ssh driver logs in over a pinned host key to a device-like SSH server, opens
a PTY shell, waits for each template step's answer at the device's prompts (exec `>`, enable `#`, config
`(config)#`, Junos' two password prompts), types every line exactly (fakenos answers only the exact lines
taught below, anything else is "Unknown command"), survives a device that echoes every typed character
(passwords included) without the secret reaching the result, and reports a refused step by number.

What it cannot prove: that a real Cisco, Arista or Juniper device accepts these lines or changes a password
(fakenos changes nothing and only knows the canned answers below, modelled on the vendors' documented CLI),
nor verification by logging in as the account (fakenos has one login only).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.drivers.custom_ssh import CustomSSHDriver
from core.ssh import Timeouts, connect
from storage.types import AssetInfo, HostKeyInfo, HostParams, fingerprint_sha256
from tests.sandbox import _free_port, new_password

fakenos = pytest.importorskip("fakenos", reason="fakenos is in the test extras: pip install -e '.[test]'")

LOGIN, LOGIN_PW = "kadmin", "Fake-login-pw-1"


def _served_key(port: int) -> tuple[str, str]:
    import time

    import paramiko

    deadline = time.monotonic() + 20
    while True:  # fakenos starts its server in a thread: wait until it listens (without opening a session)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline:
            raise TimeoutError(f"fakenos did not listen on port {port}")
        time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        t = paramiko.Transport(sock)
        try:
            t.start_client(timeout=10)
            key = t.get_remote_server_key()
            return key.get_name(), key.get_base64()
        finally:
            t.close()


@pytest.fixture
def device() -> Iterator[Callable[..., AssetInfo]]:
    """Factory: device(platform, commands) starts a fakenos host on loopback and returns its pinned asset."""
    started: list[Any] = []

    def start(platform: str, commands: dict[str, dict[str, Any]]) -> AssetInfo:
        port = _free_port("127.0.0.1")
        net = fakenos.FakeNOS(inventory={
            "hosts": {"R1": {"username": LOGIN, "password": LOGIN_PW, "port": port, "platform": platform,
                             "server": {"plugin": "ParamikoSshServer",
                                        "configuration": {"address": "127.0.0.1", "timeout": 1}},
                             "nos": {"plugin": platform, "configuration": {"commands": commands}}}},
        })
        net.start()
        started.append(net)
        key_type, b64 = _served_key(port)
        return AssetInfo(1, "R1", "127.0.0.1", port, "custom-ssh", True,
                         host_keys=(HostKeyInfo(key_type, b64, fingerprint_sha256(b64)),))

    yield start
    for net in started:
        net.stop()


def _push(asset: AssetInfo, params: HostParams, username: str, new: str, become: str | None):  # noqa: ANN202
    client = connect(asset, LOGIN, password=LOGIN_PW, timeouts=Timeouts(command=20))
    driver = CustomSSHDriver(client, login_user=LOGIN, params=params, become=become, login_password=LOGIN_PW)
    try:
        return driver.change_password(username, new)
    finally:
        driver.close()


def _ios_like(enable_pw: str, user_line: str, save_output: str) -> dict[str, dict[str, Any]]:
    return {
        "enable": {"output": None, "new_prompt": "Password: ", "prompt": "{base_prompt}>"},
        enable_pw: {"output": None, "new_prompt": "{base_prompt}#", "prompt": "Password: "},
        "configure terminal": {"output": "Enter configuration commands, one per line.  End with CNTL/Z.",
                               "new_prompt": "{base_prompt}(config)#", "prompt": "{base_prompt}#"},
        user_line: {"output": None, "prompt": "{base_prompt}(config)#"},
        "end": {"output": None, "new_prompt": "{base_prompt}#", "prompt": "{base_prompt}(config)#"},
        "write memory": {"output": save_output, "prompt": "{base_prompt}#"},
    }


FAST = {"delay_time": 0.0, "recv_timeout": 10.0}


@pytest.mark.parametrize("platform,template,user_line,saved", [
    ("cisco_ios", "cisco-ios", "username alice privilege 15 secret {new}", "Building configuration...\n[OK]"),
    ("arista_eos", "arista-eos", "username alice secret {new}", "Copy completed successfully."),
])
def test_ios_and_eos_templates_walk_enable_configure_and_save(device, platform: str, template: str, user_line: str,  # noqa: ANN001
                                                              saved: str) -> None:
    enable_pw, new = new_password(), new_password()
    asset = device(platform, _ios_like(enable_pw, user_line.format(new=new), saved))
    result = _push(asset, HostParams(template=template, **FAST), "alice", new, enable_pw)
    assert (result.state, result.error) == ("applied", "")


def test_a_device_refusing_a_line_fails_at_that_step_without_showing_the_secret(device) -> None:  # noqa: ANN001
    enable_pw, new = new_password(), new_password()
    # This device does not know the line with the new secret: it refuses it and shows its prompt again.
    asset = device("cisco_ios", _ios_like(enable_pw, "username someone-else secret x", "[OK]"))
    result = _push(asset, HostParams(template="cisco-ios", **FAST), "alice", new, enable_pw)
    assert result.state == "ambiguous" and not result.in_flight
    assert result.error.startswith("step 4: expected '\\\\(config\\\\)#\\\\s?$'"), result.error
    # fakenos answers like IOS does; the template's refusal regex stops the step at once.
    assert "% Invalid input detected" in result.error and new not in result.error and enable_pw not in result.error


def test_junos_template_answers_both_password_prompts(device) -> None:  # noqa: ANN001
    new = new_password()

    def password(_device: object, base_prompt: str, current_prompt: str, command: str) -> dict[str, str]:
        if current_prompt == "New password:":
            return {"output": None, "new_prompt": "Retype new password:"}  # type: ignore[dict-item]
        return {"output": "\n[edit]", "new_prompt": "{base_prompt}#"}

    commands = {
        "configure": {"output": "Entering configuration mode\n\n[edit]", "new_prompt": "{base_prompt}#",
                      "prompt": "{base_prompt}>"},
        "set system login user alice authentication plain-text-password": {
            "output": None, "new_prompt": "New password:", "prompt": "{base_prompt}#"},
        new: {"output": password, "prompt": ["New password:", "Retype new password:"]},
        "commit and-quit": {"output": "commit complete\nExiting configuration mode", "new_prompt": "{base_prompt}>",
                            "prompt": "{base_prompt}#"},
    }
    asset = device("juniper_junos", commands)
    result = _push(asset, HostParams(template="juniper-junos", **FAST), "alice", new, None)
    assert (result.state, result.error) == ("applied", "")
