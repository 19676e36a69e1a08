"""Host key trust: fetch the keys a server offers, parse OpenSSH known_hosts files, pin keys on assets.

Trust-on-first-use happens only here, as an explicit step (``keyturn asset trust`` or
``keyturn import --known-hosts``); drivers only compare against what was pinned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session

from core import textsafe
from core.errors import InputError, KeyturnError
from storage.db import Database
from storage.inventory import list_assets, get_asset_row, pin_host_key
from storage.types import AssetInfo, ImportSummary, fingerprint_sha256

# One Transport per type: a server presents one host key per connection, the one the client prefers.
# rsa-sha2-512 asks for the RSA key (its key type is still reported as ssh-rsa).
PREFERRED_KEY_TYPES: tuple[str, ...] = (
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512",
)
KNOWN_KEY_TYPES: frozenset[str] = frozenset({
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})


# Asking for a key type the server lacks makes paramiko's transport thread log a traceback; without a
# handler Python would print it on the user's terminal. The failure is expected and handled below.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class HostUnreachable(KeyturnError):
    """The host did not answer with an SSH server."""

    exit_code = 4


@dataclass(frozen=True)
class KnownHostsEntry:
    """One key line of a known_hosts file."""

    line: int
    patterns: tuple[str, ...]  # plain host patterns (empty for a hashed entry)
    key_type: str
    key_base64: str
    hashed: tuple[bytes, bytes] | None = None  # (salt, HMAC-SHA1) of a |1|salt|hash entry
    marker: str = ""  # @cert-authority / @revoked

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint of the key."""
        return fingerprint_sha256(self.key_base64)

    def matches(self, host_token: str) -> bool:
        """Whether the entry names host_token ("addr" or "[addr]:port"), as OpenSSH would decide."""
        if self.hashed is not None:
            salt, digest = self.hashed
            return hmac.compare_digest(hmac.new(salt, host_token.encode(), hashlib.sha1).digest(), digest)
        hit = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            if _pattern_matches(pattern.lstrip("!"), host_token):
                if negated:
                    return False
                hit = True
        return hit


def _pattern_matches(pattern: str, host_token: str) -> bool:
    """OpenSSH host pattern: only * and ? are wildcards ("[addr]:port" brackets are literal)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, host_token.lower()) is not None


def host_tokens(address: str, port: int) -> tuple[str, ...]:
    """How known_hosts names a host: "addr" for port 22 (also "[addr]:22"), else "[addr]:port"."""
    return (address, f"[{address}]:22") if port == 22 else (f"[{address}]:{port}",)


def _key_blob_type(blob: bytes) -> str:
    """The key type named inside an SSH public key blob (a length-prefixed string)."""
    if len(blob) < 4:
        raise ValueError("key blob is too short")
    (n,) = struct.unpack(">I", blob[:4])
    if n > 64 or len(blob) < 4 + n:
        raise ValueError("key blob is malformed")
    return blob[4 : 4 + n].decode("ascii", errors="replace")


def check_public_key(key_type: str, key_base64: str) -> None:
    """ValueError unless key_base64 is a well-formed public key blob of the type the line names."""
    if not re.fullmatch(r"[a-z0-9@.\-]+", key_type):
        raise ValueError(f"{key_type!r} is not an SSH key type")
    try:
        blob = base64.b64decode(key_base64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64") from None
    inner = _key_blob_type(blob)
    if inner != key_type:
        raise ValueError(f"the key says it is {inner!r}, the line says {key_type!r}")


def parse_known_hosts(text: str, source: str = "known_hosts") -> list[KnownHostsEntry]:
    """Entries of a known_hosts file with their line numbers; InputError `SOURCE:LINE: ...` when malformed."""
    entries: list[KnownHostsEntry] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        marker = ""
        if fields[0].startswith("@"):
            marker = fields.pop(0)
            if marker not in ("@cert-authority", "@revoked"):
                raise InputError(f"{source}:{lineno}: unknown marker {marker!r}")
        if len(fields) < 3:
            raise InputError(f"{source}:{lineno}: expected 'hosts key-type base64-key', got {len(fields)} fields")
        hosts, key_type, key_b64 = fields[0], fields[1], fields[2]
        try:
            check_public_key(key_type, key_b64)
        except ValueError as exc:
            raise InputError(f"{source}:{lineno}: {exc}") from None
        hashed = None
        patterns: tuple[str, ...] = ()
        if hosts.startswith("|"):
            parts = hosts.split("|")
            if len(parts) != 4 or parts[1] != "1":
                raise InputError(f"{source}:{lineno}: hashed host {hosts!r} is not in the |1|salt|hash form")
            try:
                hashed = (base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True))
            except (binascii.Error, ValueError):
                raise InputError(f"{source}:{lineno}: hashed host has invalid base64") from None
            if len(hashed[0]) != 20 or len(hashed[1]) != 20:
                raise InputError(f"{source}:{lineno}: hashed host salt and hash must be 20 bytes each")
        else:
            patterns = tuple(p for p in hosts.split(",") if p)
            if not patterns:
                raise InputError(f"{source}:{lineno}: no host names")
        entries.append(KnownHostsEntry(lineno, patterns, key_type, key_b64, hashed, marker))
    return entries


@dataclass
class _Plan:
    """What a known_hosts import would pin: (asset name, key_type, key_base64) and the messages."""

    pins: list[tuple[str, str, str, int]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    unchanged: int = 0


def plan_known_hosts(entries: list[KnownHostsEntry], assets: list[AssetInfo], source: str) -> _Plan:
    """Match entries to assets by address and port; a conflicting key is reported, never pinned."""
    plan = _Plan()
    for e in entries:
        if e.marker:
            plan.messages.append(f"{source}:{e.line}: skipped: {e.marker} lines are not pinned")
            continue
        if e.key_type not in KNOWN_KEY_TYPES:
            plan.messages.append(f"{source}:{e.line}: skipped: key type {e.key_type} is not one keyturn pins")
            continue
        matched = [a for a in assets if any(e.matches(t) for t in host_tokens(a.address, a.port))]
        if not matched:
            shown = ",".join(e.patterns) if e.patterns else "(hashed name)"
            plan.messages.append(f"{source}:{e.line}: skipped: no asset at {shown}")
            continue
        for asset in matched:
            same_type = [k for k in asset.host_keys if k.key_type == e.key_type]
            if any(k.key_base64 == e.key_base64 for k in same_type) or any(
                p[0] == asset.name and p[2] == e.key_base64 for p in plan.pins
            ):
                plan.unchanged += 1
                continue
            if same_type:
                # A different key of the same type would be a silent re-trust: exactly what a MITM needs.
                plan.messages.append(
                    f"{source}:{e.line}: skipped: asset {asset.name} already has a different {e.key_type} key pinned "
                    f"({same_type[0].fingerprint}); this file has {e.fingerprint}. "
                    f"Check it, then run `keyturn asset trust {asset.name}` to replace it"
                )
                continue
            plan.pins.append((asset.name, e.key_type, e.key_base64, e.line))
    return plan


def import_known_hosts(db: Database, path: Path, source: str | None = None, *,
                       before_commit: Callable[[Session, ImportSummary], None] | None = None,
                       before_write: Callable[[], None] | None = None) -> ImportSummary:
    """Pin keys from a known_hosts file onto existing assets, all in one transaction (or nothing).

    before_commit runs inside that transaction (the audit event commits with the pins, or neither does);
    before_write once the file is read and planned, before the transaction (a step-up check).
    """
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: cannot read it ({getattr(exc, 'strerror', None) or 'not UTF-8 text'})") from None
    entries = parse_known_hosts(text, source)
    plan = plan_known_hosts(entries, list_assets(db), source)
    summary = ImportSummary(unchanged=plan.unchanged, messages=list(plan.messages))
    if before_write is not None:
        before_write()
    with db.write() as s:
        for name, key_type, b64, _line in plan.pins:
            if pin_host_key(s, get_asset_row(s, name), key_type, b64, source="known_hosts"):
                summary.host_keys_pinned += 1
            else:
                summary.unchanged += 1
        if before_commit is not None:
            before_commit(s, summary)
    return summary


# -- fetching keys from a live server ------------------------------------------------------------------
def _fetch_one(address: str, port: int, key_type: str | None, timeout: float) -> tuple[str, str] | None:
    """The host key the server presents when key_type is the only one we accept; None if it has none."""
    import paramiko  # here, with core.ssh: listing and pinning keys needs neither

    from core.ssh import LEGACY_ALGORITHMS

    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise HostUnreachable(f"cannot connect to {address}:{port}: {exc.strerror or exc}") from None
    transport = paramiko.Transport(sock, disabled_algorithms=LEGACY_ALGORITHMS)
    try:
        if key_type is not None:
            transport.get_security_options().key_types = [key_type]
        try:
            transport.start_client(timeout=timeout)
        except paramiko.SSHException as exc:
            if key_type is not None and "host key" in str(exc).lower():
                return None
            # paramiko quotes the server's banner in some messages: it comes from outside.
            raise HostUnreachable(textsafe.clean_line(f"{address}:{port} did not complete an SSH handshake: {exc}")) from None
        except (OSError, EOFError) as exc:
            raise HostUnreachable(textsafe.clean_line(f"{address}:{port} closed the connection during the SSH handshake ({exc})")) from None
        key = transport.get_remote_server_key()
        return key.get_name(), key.get_base64()
    finally:
        transport.close()
        sock.close()


def fetch_host_keys(address: str, port: int = 22, timeout: float = 10.0) -> list[tuple[str, str]]:
    """Every host key (key_type, base64) the server offers among PREFERRED_KEY_TYPES, preferred first."""
    keys: list[tuple[str, str]] = []
    for key_type in PREFERRED_KEY_TYPES:
        found = _fetch_one(address, port, key_type, timeout)
        if found and found not in keys:
            keys.append(found)
    if not keys:
        # A server with only types we do not list (old ssh-rsa-only): take what it prefers.
        found = _fetch_one(address, port, None, timeout)
        if found:
            keys.append(found)
    return keys


@dataclass(frozen=True)
class TrustCheck:
    """The outcome of comparing a server's offered keys with the pinned ones."""

    offered: tuple[tuple[str, str], ...]
    pinned: tuple[tuple[str, str], ...]

    @property
    def already_pinned(self) -> bool:
        """Every offered key is pinned and nothing else is."""
        return set(self.offered) == set(self.pinned)

    @property
    def changed(self) -> tuple[tuple[str, str], ...]:
        """Pinned keys the server no longer presents: the situation a man-in-the-middle creates."""
        return tuple(k for k in self.pinned if k not in self.offered)


def check_trust(offered: list[tuple[str, str]], asset: AssetInfo) -> TrustCheck:
    """Compare the keys a server offers with the asset's pinned keys."""
    return TrustCheck(tuple(offered), tuple((k.key_type, k.key_base64) for k in asset.host_keys))
