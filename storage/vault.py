"""The vault cipher: AES-256-GCM; each value carries its key's id and is bound to where it belongs.

A sealed value is `02 | key id (8) | nonce (12) | ciphertext+tag`. The associated data binds it to
(table, row id, field) and, for account secrets, to the asset, user name, secret type and version, so an
older ciphertext of the same account, or a value moved to another asset or account, does not decrypt.
A Vault is a keyring: the current key seals, and any key it holds (retired ones too) opens a value sealed
under it, so a value written by a process that still held the previous key stays readable.
Version 1 values (no key id, table/row/field only) are read only while migration 0004 re-seals them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 8
FORMAT_V1 = b"\x01"
FORMAT_V2 = b"\x02"
_TAG = 16


# What json.dumps(..., sort_keys=True, separators=(",", ":"), default=str) uses, made once: building an
# encoder per value was most of the cost of sealing a value (an import seals one per account).
_AD_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


class VaultError(Exception):
    """A value could not be decrypted: wrong key, tampered bytes, or a ciphertext moved to another row."""


def key_id_of(key: bytes) -> bytes:
    """The public id of a master key (a hash prefix, so it names the key without revealing it)."""
    return hashlib.sha256(b"keyturn master key id\0" + key).digest()[:KEY_ID_BYTES]


def blob_key_id(blob: bytes | None) -> bytes | None:
    """The key id a sealed value names (None for a version 1 value or garbage)."""
    if blob and blob[:1] == FORMAT_V2 and len(blob) >= 1 + KEY_ID_BYTES:
        return blob[1 : 1 + KEY_ID_BYTES]
    return None


class Vault:
    """Encrypts under the current key and decrypts under any key of the ring, bound to row, field and binding."""

    def __init__(self, key: bytes, old_keys: Iterable[bytes] = (), *, accept_v1: bool = False) -> None:
        for k in (key, *old_keys):
            if len(k) != KEY_BYTES:
                raise VaultError(f"master key must be {KEY_BYTES} bytes, got {len(k)}")
        self.key_id = key_id_of(key)
        self._current = AESGCM(key)
        self._ring = {key_id_of(k): AESGCM(k) for k in old_keys}
        self._ring[self.key_id] = self._current
        self.accept_v1 = accept_v1

    @property
    def key_ids(self) -> frozenset[bytes]:
        """Ids of every key this vault can open values with."""
        return frozenset(self._ring)

    @staticmethod
    def associated_data(table: str, row_id: int | str, field: str, binding: Mapping[str, object] | None = None) -> bytes:
        """The bytes that tie a ciphertext to one row's field and what it belongs to; elsewhere the tag breaks."""
        return b"keyturn:v2:" + _AD_JSON.encode([table, str(row_id), field, dict(binding or {})]).encode()

    @staticmethod
    def _associated_data_v1(table: str, row_id: int | str, field: str) -> bytes:
        return f"keyturn:v1:{table}:{row_id}:{field}".encode()

    def encrypt(self, plaintext: str, table: str, row_id: int | str, field: str,
                binding: Mapping[str, object] | None = None) -> bytes:
        """Encrypt under the current key with a fresh 96-bit nonce."""
        if row_id is None:
            raise VaultError(f"cannot encrypt {table}.{field} before the row has an id")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, plaintext.encode(), self.associated_data(table, row_id, field, binding))
        return FORMAT_V2 + self.key_id + nonce + sealed

    def decrypt(self, blob: bytes, table: str, row_id: int | str, field: str,
                binding: Mapping[str, object] | None = None) -> str:
        """Decrypt a value; raises VaultError naming the field (never the value) when it does not verify."""
        where = f"{table}.{field} of row {row_id}"
        if blob and blob[:1] == FORMAT_V1 and self.accept_v1 and len(blob) >= 1 + NONCE_BYTES + _TAG:
            nonce, sealed, ad = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], self._associated_data_v1(table, row_id, field)
            aead = self._current
        elif blob and blob[:1] == FORMAT_V2 and len(blob) >= 1 + KEY_ID_BYTES + NONCE_BYTES + _TAG:
            kid = blob[1 : 1 + KEY_ID_BYTES]
            aead = self._ring.get(kid)  # type: ignore[assignment]
            if aead is None:
                raise VaultError(f"{where}: sealed under master key {kid.hex()}, which this keyring does not hold "
                                 "(a retired master.key.old-* file removed, or the wrong data directory)")
            body = blob[1 + KEY_ID_BYTES :]
            nonce, sealed, ad = body[:NONCE_BYTES], body[NONCE_BYTES:], self.associated_data(table, row_id, field, binding)
        else:
            raise VaultError(f"{where}: not a keyturn vault value (damaged or unknown format)")
        try:
            plain = aead.decrypt(nonce, sealed, ad)
        except InvalidTag:
            raise VaultError(
                f"{where}: does not verify (wrong master key, tampered value, or a value copied from another row, "
                "account or version)"
            ) from None
        return plain.decode()
