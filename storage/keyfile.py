"""The data directory and the master key file, with the permission checks that guard them."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path

from storage.vault import KEY_BYTES, Vault, VaultError, key_id_of

KEY_NAME = "master.key"
AUDIT_KEY_NAME = "audit.key"  # the audit chain's HMAC key: outside the database, so editing rows is not enough


class KeyFileError(Exception):
    """The data directory or master key is unsafe or unusable; the program must not go on."""


def _check_private(path: Path, what: str) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{what} {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod {'700' if path.is_dir() else '600'} {path}"
        )
    if hasattr(os, "geteuid") and path.stat().st_uid != os.geteuid():
        raise KeyFileError(f"{what} {path} is owned by another user (uid {path.stat().st_uid})")


def ensure_data_dir(home: Path) -> Path:
    """Create the data directory 0700 if missing; refuse one that group or others can reach."""
    if not home.exists():
        old = os.umask(0o077)
        try:
            home.mkdir(parents=True, mode=0o700)
        finally:
            os.umask(old)
    if not home.is_dir():
        raise KeyFileError(f"data directory {home} is not a directory")
    _check_private(home, "data directory")
    return home


def key_path(home: Path) -> Path:
    """Where the master key lives in a data directory."""
    return home / KEY_NAME


def read_key(path: Path) -> bytes:
    """Read a master key file after checking that only its owner can read it."""
    _check_private(path, "master key file")
    data = path.read_bytes()
    if len(data) != KEY_BYTES:
        raise KeyFileError(f"master key file {path} holds {len(data)} bytes, expected {KEY_BYTES}")
    return data


def sync_dir(directory: Path) -> None:
    """fsync a directory, so a rename or link in it survives a power cut (the file's own fsync does not)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key(path: Path, key: bytes) -> None:
    """Write a key file 0600 atomically (temp file in the same directory, then rename, then sync the dir)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    sync_dir(path.parent)


def load_or_create_key(home: Path, *, database_has_secrets: bool) -> bytes:
    """Return the master key, creating it on first start; refuse when secrets exist but the key is gone."""
    path = key_path(home)
    if path.exists():
        return read_key(path)
    if database_has_secrets:
        raise KeyFileError(
            f"master key {path} is missing but the database already holds encrypted secrets; "
            "restore the key file from your backup (a new key could not read them)"
        )
    key = os.urandom(KEY_BYTES)
    write_key(path, key)
    return key


def load_keyring(home: Path, current_id: bytes | None = None) -> Vault:
    """Every master key in the data directory as one keyring; current: the key with current_id (default master.key).

    master.key.new (a rotation between its commit and its file swap) and retired master.key.old-* keys are
    included, so values sealed under any of them still open.
    """
    paths = [key_path(home), home / "master.key.new", *sorted(home.glob(f"{KEY_NAME}.old-*"))]
    keys = [read_key(p) for p in paths if p.exists()]
    if not keys:
        raise KeyFileError(f"no master key in {home}")
    current = keys[0]
    if current_id is not None:
        matching = [k for k in keys if key_id_of(k) == current_id]
        if not matching:
            raise VaultError(f"the database is sealed under master key {current_id.hex()}, which is not in {home}")
        current = matching[0]
    return Vault(current, [k for k in keys if k != current])


def audit_key_paths(home: Path) -> tuple[Path, Path]:
    """(audit.key, audit.key.new): the key in use, and one being introduced (chain not yet re-keyed)."""
    return home / AUDIT_KEY_NAME, home / (AUDIT_KEY_NAME + ".new")


def retire_key(home: Path, now: datetime | None = None) -> Path:
    """Rename the current key to master.key.old-<date> (kept until the user removes it)."""
    now = now or datetime.now(timezone.utc)
    path = key_path(home)
    target = home / f"{KEY_NAME}.old-{now.strftime('%Y%m%dT%H%M%SZ')}"
    n = 1
    while target.exists():
        n += 1
        target = home / f"{KEY_NAME}.old-{now.strftime('%Y%m%dT%H%M%SZ')}-{n}"
    os.link(path, target)
    sync_dir(home)
    return target
