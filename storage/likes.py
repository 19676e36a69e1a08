"""LIKE patterns built from user text: `%` and `_` in a node path or a search are literal, never wildcards."""

from __future__ import annotations

# `!` rather than a backslash: MySQL/MariaDB also treat a backslash in a string literal as an escape.
ESCAPE = "!"


def escape_like(text: str) -> str:
    """text with LIKE's wildcards and the escape character itself made literal (use with escape=ESCAPE)."""
    return text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")


def below(path: str) -> str:
    """The pattern matching every node path strictly below path (`/prod_db` never matches `/prodXdb/...`)."""
    return escape_like(path) + "/%"


def below_prefix(path: str) -> str:
    """What every node path strictly below path starts with. LIKE ignores case on SQLite (`/Prod/x` is LIKE
    `/prod/%`), so a subtree query also compares this prefix exactly (substr), on every backend."""
    return path + "/"


def contains(text: str) -> str:
    """The pattern matching any value containing text literally."""
    return "%" + escape_like(text) + "%"

