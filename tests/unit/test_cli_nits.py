"""Issue 12's command-line nits, run as a user runs keyturn: a missing --config and a negative --limit."""

from __future__ import annotations


def test_missing_config_file_is_an_error_naming_it(keyturn_cli, tmp_path) -> None:
    missing = tmp_path / "no-such.toml"
    proc = keyturn_cli("--config", str(missing), "task", "list")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"keyturn: error: --config: no such file {missing}"


def test_negative_limit_is_refused(keyturn_cli) -> None:
    proc = keyturn_cli("records", "list", "--limit", "-3")
    assert proc.returncode == 2 and "--limit: expected a positive number, got -3" in proc.stderr
