"""QR codes drawn with half-block characters, for enrolling a phone from a terminal (CLI and TUI)."""

from __future__ import annotations

import segno

QUIET_ZONE = 4  # modules of light border every reader expects around the symbol

# (top light, bottom light) -> character. Light modules are drawn filled, so on a usual dark terminal the
# code appears dark-on-light, the way a phone camera expects it.
_HALF_BLOCKS = {(False, False): " ", (True, False): "\u2580", (False, True): "\u2584", (True, True): "\u2588"}


def qr_matrix(data: str, *, border: int = QUIET_ZONE) -> list[list[bool]]:
    """The QR symbol for data as rows of booleans (True = dark module), quiet zone included."""
    qr = segno.make_qr(data, error="m")
    return [[bool(v) for v in row] for row in qr.matrix_iter(scale=1, border=border)]


def qr_halfblocks(data: str, *, border: int = QUIET_ZONE) -> str:
    """The QR symbol as text: two modules per character cell (upper and lower half), light ones filled."""
    rows = qr_matrix(data, border=border)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))  # an odd last row pairs with more quiet zone (light)
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2]):
        lines.append("".join(_HALF_BLOCKS[(not t, not b)] for t, b in zip(top, bottom)))
    return "\n".join(lines)
