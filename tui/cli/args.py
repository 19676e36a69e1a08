"""Argument types shared by the command groups: numbers within bounds, refused with the bound in the message."""

from __future__ import annotations

import argparse


def number_arg(low: float, high: float, kind: type = float, unit: str = ""):  # type: ignore[no-untyped-def]
    """An argparse type: a number (kind float or int) from low to high; unit (e.g. "seconds") names what it counts."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = f"{'whole ' if kind is int else ''}number" + (f" of {unit}" if unit else "")
            raise argparse.ArgumentTypeError(f"must be a {what} (got {text!r})") from None
        if not low <= value <= high:
            unit_words = f" {unit}" if unit else ""
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}{unit_words} (got {text!r})")
        return value

    return parse
