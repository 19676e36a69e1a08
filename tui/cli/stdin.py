"""Secrets read from standard input one line each: what of the line is the secret."""

from __future__ import annotations


def without_line_end(line: str) -> str:
    """line without its line ending: one "\\n", or one "\\r\\n" (a file saved on Windows), and nothing else.

    Any other character, a lone trailing "\\r" included, stays part of the value, so a check that refuses
    it can say so instead of a secret silently differing from what was given.
    """
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith("\n"):
        return line[:-1]
    return line
