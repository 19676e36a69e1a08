"""The vault cipher: AES-256-GCM with associated data binding each value to its row and field."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT_V1 = b"\x01"


class VaultError(Exception):
    """A value could not be decrypted: wrong key, tampered bytes, or a ciphertext moved to another row."""


class Vault:
    """Encrypts and decrypts secret strings bound to (table, row id, field)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise VaultError(f"master key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @staticmethod
    def associated_data(table: str, row_id: int | str, field: str) -> bytes:
        """The bytes that tie a ciphertext to one row's field; moving it elsewhere breaks the tag."""
        return f"keyturn:v1:{table}:{row_id}:{field}".encode()

    def encrypt(self, plaintext: str, table: str, row_id: int | str, field: str) -> bytes:
        """Encrypt with a fresh 96-bit nonce; the result is version byte + nonce + ciphertext."""
        if row_id is None:
            raise VaultError(f"cannot encrypt {table}.{field} before the row has an id")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self.associated_data(table, row_id, field))
        return FORMAT_V1 + nonce + sealed

    def decrypt(self, blob: bytes, table: str, row_id: int | str, field: str) -> str:
        """Decrypt a value; raises VaultError naming the field (never the value) when it does not verify."""
        where = f"{table}.{field} of row {row_id}"
        if not blob or blob[:1] != FORMAT_V1 or len(blob) < 1 + NONCE_BYTES + 16:
            raise VaultError(f"{where}: not a keyturn vault value (damaged or unknown format)")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, self.associated_data(table, row_id, field))
        except InvalidTag:
            raise VaultError(
                f"{where}: does not verify (wrong master key, tampered value, or a value copied from another row)"
            ) from None
        return plain.decode()
