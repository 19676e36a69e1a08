"""keyturn key: master key management."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.context import Context


def register(sub: argparse._SubParsersAction) -> None:
    """Add `keyturn key rotate`."""
    key = sub.add_parser("key", help="manage the master key", description="Manage the vault's master key.")
    key_sub = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    rotate = key_sub.add_parser(
        "rotate", help="re-encrypt every secret under a new master key",
        description="Re-encrypt every stored secret under a fresh master key in one transaction. "
        "The old key is kept as master.key.old-<date> until you remove it.",
    )
    rotate.set_defaults(handler=cmd_rotate, permission="edit")


def cmd_rotate(ctx: Context, args: argparse.Namespace) -> int:
    """Rotate the master key."""
    from core.vaultkeys import rotate_master_key

    count, retired = rotate_master_key(ctx)
    print(f"re-encrypted {count} secret values under a new master key; old key kept as {retired}")
    print("remove the old key file once your backups hold the new one")
    return 0
