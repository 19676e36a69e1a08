"""Settings: defaults, the TOML file, KEYTURN_* overrides, and errors naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError


def test_defaults_use_xdg_data_dir_and_sqlite(tmp_path: Path) -> None:
    s = load_settings(env={"XDG_DATA_HOME": str(tmp_path / "d"), "XDG_CONFIG_HOME": str(tmp_path / "c")})
    assert s.home == tmp_path / "d" / "keyturn"
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'd' / 'keyturn' / 'keyturn.db'}"
    assert s.secure_mode is True and s.concurrency == 32
    assert s.mfa_unlock_seconds == 300 and s.mfa_max_failures == 5


def test_file_then_environment_override(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('secure_mode = false\nconcurrency = 8\n[smtp]\nhost = "mail.example"\nport = 587\nstarttls = true\n')
    env = {"KEYTURN_CONFIG": str(cfg), "KEYTURN_HOME": str(tmp_path / "h"), "KEYTURN_SMTP_PORT": "2525",
           "KEYTURN_CONCURRENCY": "4"}
    s = load_settings(env=env)
    assert s.home == tmp_path / "h"
    assert s.secure_mode is False
    assert (s.smtp_host, s.smtp_port, s.smtp_starttls, s.concurrency) == ("mail.example", 2525, True, 4)


@pytest.mark.parametrize("content,needle", [("concurrency = 'many'", "concurrency"), ("nosuch = 1", "nosuch"),
                                            ("secure_mode = 'maybe'", "secure_mode"), ("[smtp\n", "config.toml")])
def test_bad_file_names_the_key(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_settings(env={"KEYTURN_CONFIG": str(cfg)})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KEYTURN_SMTP_PORT"):
        load_settings(env={"KEYTURN_SMTP_PORT": "twenty-five", "KEYTURN_CONFIG": "/nonexistent.toml"})


def test_the_deadline_margin_sets_the_push_budget_and_the_hosts_limit(tmp_path: Path) -> None:
    """deadline_margin: 5 s unless set; a record's deadline is command timeout + 2 margins after `pushing`, and
    the host is told to stop a margin before it."""
    import time

    from core.drivers.base import change_budget, seconds_left
    from core.drivers.dbconn import seconds_until
    from core.ssh import Timeouts

    env = {"KEYTURN_CONFIG": str(tmp_path / "none.toml"), "KEYTURN_COMMAND_TIMEOUT": "20"}
    default = Timeouts.from_settings(load_settings(env=env))
    assert (default.margin, change_budget(default)) == (5.0, 30.0)
    short = Timeouts.from_settings(load_settings(env={**env, "KEYTURN_DEADLINE_MARGIN": "2"}))
    assert (short.margin, change_budget(short)) == (2.0, 24.0)
    deadline = time.time() + change_budget(short)
    assert seconds_left(deadline, short) in (21, 22)  # whole seconds, a margin before the deadline
    assert seconds_until(deadline, 20.0, short.margin) in (21.0, 22.0)
    assert seconds_left(None, short) == 22  # no deadline: command timeout + margin


@pytest.mark.parametrize("value", ["0.5", "0", "-5", "nan"])
def test_a_deadline_margin_under_a_second_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="deadline_margin must be at least 1 second"):
        load_settings(env={"KEYTURN_CONFIG": str(tmp_path / "none.toml"), "KEYTURN_DEADLINE_MARGIN": value})
