"""What the command line loads: `keyturn --help` only argparse and light modules, `asset list` no drivers or UI.

Each check runs the CLI's main() in a fresh interpreter and reads sys.modules afterwards. The start-up times
these imports cost are measured by benchmarks/startup.py, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.context import Context
from core.services import inventory as svc

ROOT = Path(__file__).resolve().parents[2]

# The ORM, SSH, the app, the database drivers, the scheduler's cron parser, the importer's YAML, QR codes.
NOT_FOR_HELP = ("sqlalchemy", "sqlmodel", "pydantic", "paramiko", "cryptography", "textual", "rich", "psycopg",
                "pymysql", "redis", "croniter", "yaml", "segno", "pyotp", "storage.db", "storage.tables")
NOT_FOR_ASSET_LIST = ("paramiko", "textual", "rich", "pymysql", "redis", "croniter", "yaml", "segno", "aiosmtpd",
                      "core.ssh", "core.drivers", "core.engine", "core.importer", "tui.app", "tui.screens")
# On a current SQLite vault `asset list` reads with sqlite3 (core/quicklist.py): not even the ORM.
NOT_FOR_QUICK_ASSET_LIST = (*NOT_FOR_ASSET_LIST, "sqlalchemy", "sqlmodel", "pydantic", "alembic", "storage.db",
                            "storage.tables", "core.context")


def _run_main(args: list[str], env: dict[str, str] | None = None) -> dict:
    """main(args) in a new interpreter: its exit code, stdout, and every module it had loaded by the end."""
    code = ("import contextlib, io, json, sys\n"
            "from tui.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    try:\n"
            f"        rc = main({args!r})\n"
            "    except SystemExit as exc:\n"
            "        rc = exc.code\n"
            "print(json.dumps({'rc': rc, 'out': out.getvalue(), 'modules': sorted(sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          check=True, timeout=120)
    return json.loads(proc.stdout.splitlines()[-1])


def _loaded(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted({f for f in forbidden for m in modules if m == f or m.startswith(f + ".")})


@pytest.mark.parametrize("args", [["--help"], ["task", "create", "--help"], ["asset", "add", "--help"]],
                         ids=" ".join)
def test_help_loads_no_orm_ssh_or_ui(args: list[str]) -> None:
    result = _run_main(args)
    assert result["rc"] == 0
    assert "usage: keyturn" in result["out"]
    assert _loaded(result["modules"], NOT_FOR_HELP) == []


def test_asset_list_loads_no_orm_drivers_or_ui(ctx: Context, keyturn_env: dict[str, str]) -> None:
    svc.add_asset(ctx, "web1", address="10.0.0.1", nodes=["/prod"])
    for args in (["asset", "list"], ["asset", "list", "--node", "/prod", "--json"]):
        result = _run_main(args, env=keyturn_env)
        assert result["rc"] == 0
        assert "web1" in result["out"]
        assert _loaded(result["modules"], NOT_FOR_QUICK_ASSET_LIST) == []


def test_asset_list_the_full_way_loads_no_drivers_or_ui(ctx: Context, keyturn_env: dict[str, str]) -> None:
    """A node that does not exist is worded by the full path (the ORM), still without drivers or the UI."""
    svc.add_asset(ctx, "web1", address="10.0.0.1", nodes=["/prod"])
    result = _run_main(["asset", "list", "--node", "/nowhere"], env=keyturn_env)
    assert result["rc"] == 1
    assert "sqlalchemy" in result["modules"]
    assert _loaded(result["modules"], NOT_FOR_ASSET_LIST) == []
