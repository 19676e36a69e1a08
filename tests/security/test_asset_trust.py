"""Finding 1 (part): changing an asset's address or port drops its pinned host keys.

Otherwise `asset edit web1 --address <mine>` kept web1's pinned key, and the next connection to the new
address would be judged against trust given to the old one (or re-trusted with `--yes` in passing).
"""

from __future__ import annotations

from core.context import Context
from storage.inventory import get_asset, pin_host_key, upsert_asset

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _pinned(ctx: Context) -> int:
    with ctx.db.write() as s:
        asset, _ = upsert_asset(s, "web1", address="10.0.0.1", port=22)
        pin_host_key(s, asset, "ssh-ed25519", KEY, "test")
    return len(get_asset(ctx.db, "web1").host_keys)


def test_a_new_address_or_port_starts_without_pinned_keys(ctx: Context) -> None:
    assert _pinned(ctx) == 1
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="10.0.0.1", port=22, comment="same place")
    assert len(get_asset(ctx.db, "web1").host_keys) == 1  # nothing moved: trust stays
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="10.6.6.6", port=22)
    assert get_asset(ctx.db, "web1").host_keys == ()
    assert _pinned(ctx) == 1
    with ctx.db.write() as s:
        upsert_asset(s, "web1", address="10.0.0.1", port=2222)
    assert get_asset(ctx.db, "web1").host_keys == ()
