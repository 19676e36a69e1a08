"""`--param KEY=VALUE` on `keyturn task create/edit`, and the parameters' lines in `keyturn task show`.

Only translation: core.params parses, checks and describes the parameters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core import params as core_params
from core.types import HostParams

PARAM_HELP = ("task parameter (repeatable): " + ", ".join(core_params.PARAM_KEYS)
              + "; commands=@FILE and answers=@FILE read a file; see docs/platforms.md")


def add_param_option(parser: argparse.ArgumentParser) -> None:
    """The repeatable --param option."""
    parser.add_argument("--param", action="append", metavar="KEY=VALUE", default=None, help=PARAM_HELP)


def apply_param_args(base: HostParams, assignments: list[str] | None, cwd: Path | None = None) -> HostParams | None:
    """base with the --param assignments applied (None when none were given); InputError names the key."""
    if not assignments:
        return None
    values = dict(core_params.parse_assignment(a, cwd or Path.cwd()) for a in assignments)
    return core_params.apply(base, values)


def param_lines(params: HostParams) -> list[str]:
    """`param KEY: VALUE` lines of the parameters that differ from their defaults (multi-line values indented)."""
    lines = []
    for key, text in core_params.described(params):
        first, *rest = text.splitlines() or [""]
        lines.append(f"param {key}: {first}")
        lines.extend(f"  {ln}" for ln in rest)
    return lines
