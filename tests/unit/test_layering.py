"""core/ and storage/ must not pull in Textual (tui -> core -> storage, one direction)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules(package: str) -> list[str]:
    return [f"{package}.{m.name}" for m in pkgutil.walk_packages([str(ROOT / package.replace(".", "/"))])
            if not m.name.startswith("migrations")]


def test_core_and_storage_import_without_textual() -> None:
    mods = ["core", "storage", *_modules("core"), *_modules("storage")]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
            "print(','.join(bad))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip() == "", f"textual imported by core/storage: {proc.stdout}"


def test_storage_does_not_import_core_or_paramiko() -> None:
    mods = ["storage", *_modules("storage")]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('core', 'paramiko', 'tui'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip() == ""


def _imports_storage(path: Path) -> bool:
    import ast

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        if any(n == "storage" or n.startswith("storage.") for n in names):
            return True
    return False


def test_tui_does_not_import_storage() -> None:
    """The app and the CLI go through core (tui -> core -> storage), function-level imports included."""
    importing = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tui").rglob("*.py") if _imports_storage(p))
    assert importing == [], "tui modules importing storage: reach it through a core function instead"
