"""Fixtures shared by every test: a private data directory, an open context, and the CLI as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.context import Context, open_context

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def keyturn_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a keyturn process with its own data and config directories."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update(KEYTURN_HOME=str(home), KEYTURN_CONFIG=str(tmp_path / "config.toml"), KEYTURN_OPERATOR="tester",
               XDG_CONFIG_HOME=str(tmp_path / "xdg-config"), XDG_DATA_HOME=str(tmp_path / "xdg-data"))
    return env


@pytest.fixture
def settings(keyturn_env: dict[str, str]) -> Settings:
    """Settings pointing at the test's private data directory."""
    return load_settings(env=keyturn_env)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    """An open keyturn context on a fresh SQLite database."""
    context = open_context(settings, operator="tester", source="pytest")
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def keyturn_cli(keyturn_env: dict[str, str]):
    """Run the real `keyturn` command in a subprocess: keyturn_cli("asset", "list", input=..., check=True)."""

    def run(*args: str, input: str | None = None, check: bool = False, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "tui", *args], input=input, capture_output=True, text=True,
                              env={**keyturn_env, **(env or {})}, cwd=ROOT, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"keyturn {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    return run
