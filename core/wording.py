"""Words shown to people, shared by core messages and both front ends."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 task', '2 tasks' ('1 key', '3 keys'); many for irregular words."""
    return f"{count} {word if count == 1 else many or word + 's'}"
