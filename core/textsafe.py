"""Text from outside (host output, banners, database errors, environment) made safe to store and to show.

A host must never write to an operator's terminal: an `ESC ] 52` sequence sets the clipboard, `ESC [ 2J`
clears the screen, a bare carriage return overwrites what is already shown, and bidirectional overrides
make a line read differently from what it holds. Every such sequence is removed whole (not only its ESC, so
no half of it is left to be misread), then every remaining control character except newline and tab.
Applied when text comes in, and again on each output path, so rows stored before this rule are safe too.
"""

from __future__ import annotations

import re

# ESC-introduced sequences: CSI (ESC [ ... final), OSC/DCS/SOS/PM/APC strings (ended by BEL or ST), and
# two-byte escapes; the 8-bit C1 forms of CSI and of the string introducers too.
_SEQUENCES = re.compile(
    r"""
    (?: \x1b\[ | \x9b ) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?          # CSI, as far as it goes
  | (?: \x1b[\]PX^_] | [\x90\x98\x9d\x9e\x9f] ) .*? (?: \x07 | \x1b\\ | \x9c | $ )   # OSC, DCS, SOS, PM, APC
  | \x1b [\x20-\x2f]* [\x30-\x7e]?                                     # any other escape
    """,
    re.VERBOSE | re.DOTALL,
)
# C0 except tab and newline, DEL, C1; and Unicode's invisible direction controls.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """text without escape sequences or control characters; newlines and tabs are kept."""
    if not text:
        return text
    text = text.replace("\r\n", "\n")
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))


def clean_line(text: str) -> str:
    """clean(text) on one line: newlines and tabs become spaces (for a banner, an address, a name)."""
    return " ".join(clean(text).replace("\t", " ").split("\n")).strip()


def clean_value(value: object) -> object:
    """clean() applied to every string inside a JSON-like value (dicts, lists), other values unchanged."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(k)) if isinstance(k, str) else k: clean_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clean_value(v) for v in value)
    return value
