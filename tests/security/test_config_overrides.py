"""Finding 4: through the sudo wrapper, neither --config nor KEYTURN_* reach the service.

Against the README's deployment (tests/security/deployment.py): mallory, in pam-admins but no operator,
tried to switch lockout and secure mode off, send the SMTP password to her own server, or point the service
at another database. Each attempt is now refused before anything is opened, and a file that does not parse
is never quoted back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ProcessIdentity, load_settings
from core.errors import ConfigError
from tests.security.deployment import CONFIG, Deployment

pytestmark = pytest.mark.sshd

EVIL_CONFIG = 'mfa_max_failures = 1000000000\nsecure_mode = false\n[smtp]\nhost = "127.0.0.1"\nport = 2525\n'


def test_config_option_is_refused_through_sudo(deployment: Deployment) -> None:
    d = deployment
    d.host.write_file("/tmp/evil.toml", EVIL_CONFIG, mode=0o644, owner="mallory")
    for args in (("--config", "/tmp/evil.toml", "asset", "list"), ("--config=/tmp/evil.toml", "operator", "list")):
        p = d.keyturn("mallory", *args)
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert "--config is refused when keyturn runs through sudo" in p.stderr
    # Pointing --config at a file only the service can read tells nothing about its bytes either.
    p = d.keyturn("mallory", "--config", "/var/lib/keyturn/master.key", "asset", "list")
    assert p.returncode == 2 and "refused" in p.stderr


def test_keyturn_variables_are_refused_even_when_sudoers_lets_them_through(deployment: Deployment) -> None:
    d = deployment
    # A careless rule (SETENV) would let mallory set variables for the service: keyturn still refuses them.
    d.host.write_file("/etc/sudoers.d/zz-careless", "mallory ALL=(keyturn) NOPASSWD:SETENV: /var/lib/keyturn-bin/keyturn\n",
                      mode=0o440, owner="root")
    try:
        for var in ("KEYTURN_MFA_MAX_FAILURES=1000000000", "KEYTURN_SECURE_MODE=false", "KEYTURN_SMTP_HOST=evil.example",
                    "KEYTURN_DATABASE_URL=sqlite:////tmp/mine.db", "KEYTURN_OPERATOR=alice"):
            p = d.keyturn("mallory", "asset", "list", sudo_env=var)
            assert p.returncode == 2, (var, p.stdout, p.stderr)
            assert var.split("=")[0] in p.stderr and "refused when keyturn runs through sudo" in p.stderr
    finally:
        d.host.run(["rm", "-f", "/etc/sudoers.d/zz-careless"], check=True)
    assert d.keyturn("mallory", "asset", "list").returncode == 0  # the plain wrapper still works


def test_a_config_file_others_can_change_stops_the_service(deployment: Deployment) -> None:
    d = deployment
    d.write_config('[smtp]\nhost = "mail.example"\n')
    try:
        d.host.run(["chmod", "666", CONFIG], check=True)
        p = d.keyturn("mallory", "asset", "list")
        assert p.returncode == 2 and "group or others may write it" in p.stderr
        d.host.run(["chmod", "644", CONFIG], check=True)
        d.host.run(["chown", "mallory", CONFIG], check=True)
        p = d.keyturn("mallory", "asset", "list")
        assert p.returncode == 2 and "not by root or the user keyturn runs as" in p.stderr
    finally:
        d.write_config("")
    assert d.keyturn("mallory", "asset", "list").returncode == 0


SUDO = ProcessIdentity(real_uid=990, effective_uid=990, sudo_user="mallory", sudo_uid="1001")


def test_the_same_rules_without_a_host(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("")
    env = {"KEYTURN_CONFIG": str(cfg), "KEYTURN_HOME": str(tmp_path / "h")}
    assert load_settings(env=env, identity=SUDO).secure_mode is True  # the wrapper's own variables are fine
    with pytest.raises(ConfigError, match="KEYTURN_MFA_MAX_FAILURES"):
        load_settings(env={**env, "KEYTURN_MFA_MAX_FAILURES": "9"}, identity=SUDO)
    with pytest.raises(ConfigError, match="--config is refused"):
        load_settings(env=env, config_path=cfg, identity=SUDO)
    setuid = ProcessIdentity(real_uid=1001, effective_uid=990)
    with pytest.raises(ConfigError, match="KEYTURN_SECURE_MODE"):
        load_settings(env={**env, "KEYTURN_SECURE_MODE": "0"}, identity=setuid)


@pytest.mark.parametrize("content", [b'smtp_port = "hunter2-SECRET"\n', b'secure_mode = "hunter2-SECRET"\n',
                                     b"root:hunter2-SECRET:19000:0:99999:7:::\n", b"\xffhunter2-SECRET\n",
                                     b'[smtp\nhunter2-SECRET = 1\n'])
def test_a_config_that_does_not_parse_never_shows_its_bytes(tmp_path: Path, content: bytes) -> None:
    cfg = tmp_path / "other-file"
    cfg.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"KEYTURN_CONFIG": str(cfg), "KEYTURN_HOME": str(tmp_path / "h")})
    assert "hunter2" not in str(caught.value) and "SECRET" not in str(caught.value)
    assert str(cfg) in str(caught.value)
