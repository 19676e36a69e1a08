"""Issue 12's command-line nits, run as a user runs keyturn: a missing --config, a negative --limit, plurals."""

from __future__ import annotations


def test_missing_config_file_is_an_error_naming_it(keyturn_cli, tmp_path) -> None:
    missing = tmp_path / "no-such.toml"
    proc = keyturn_cli("--config", str(missing), "task", "list")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"keyturn: error: --config: no such file {missing}"


def test_negative_limit_is_refused(keyturn_cli) -> None:
    proc = keyturn_cli("records", "list", "--limit", "-3")
    assert proc.returncode == 2 and "error: limit: must be at least 1 (got -3)" in proc.stderr


def test_counts_in_core_messages_use_the_singular_for_one() -> None:
    """A run of one account on one asset starts '1 account on 1 asset', not '1 accounts on 1 assets'."""
    from core.events import ExecutionStarted

    one = ExecutionStarted(execution_id=7, task_name="t", trigger="manual", total=1, assets=1)
    many = ExecutionStarted(execution_id=7, task_name="t", trigger="manual", total=3, assets=2)
    assert one.text().endswith("(manual): 1 account on 1 asset")
    assert many.text().endswith("(manual): 3 accounts on 2 assets")
