"""The vault cipher: round trip, and detection of tampering, swapped ciphertexts and a wrong key."""

from __future__ import annotations

import os

import pytest

from storage.vault import Vault, VaultError


@pytest.fixture
def vault() -> Vault:
    return Vault(os.urandom(32))


def test_round_trip_keeps_every_character(vault: Vault) -> None:
    secret = "p@$$ w0rd 'quoted' \"double\" {{ jinja }} \\ back ünïcödé"
    blob = vault.encrypt(secret, "account", 7, "secret_enc")
    assert vault.decrypt(blob, "account", 7, "secret_enc") == secret
    assert secret.encode() not in blob


def test_fresh_nonce_per_value(vault: Vault) -> None:
    a = vault.encrypt("same", "account", 1, "secret_enc")
    b = vault.encrypt("same", "account", 1, "secret_enc")
    assert a != b
    assert a[1:13] != b[1:13]


def test_tampered_byte_is_detected(vault: Vault) -> None:
    blob = bytearray(vault.encrypt("hunter2", "account", 1, "secret_enc"))
    blob[-1] ^= 0x01
    with pytest.raises(VaultError, match="does not verify"):
        vault.decrypt(bytes(blob), "account", 1, "secret_enc")


@pytest.mark.parametrize("where", [("account", 2, "secret_enc"), ("change_record", 1, "secret_enc"),
                                   ("account", 1, "passphrase_enc")])
def test_ciphertext_moved_to_another_row_or_field_is_detected(vault: Vault, where: tuple) -> None:
    blob = vault.encrypt("hunter2", "account", 1, "secret_enc")
    with pytest.raises(VaultError):
        vault.decrypt(blob, *where)


def test_wrong_key_is_detected_and_message_holds_no_secret(vault: Vault) -> None:
    blob = vault.encrypt("hunter2-secret", "account", 1, "secret_enc")
    with pytest.raises(VaultError) as info:
        Vault(os.urandom(32)).decrypt(blob, "account", 1, "secret_enc")
    assert "hunter2" not in str(info.value)
    assert "account.secret_enc of row 1" in str(info.value)


def test_garbage_is_refused_clearly(vault: Vault) -> None:
    with pytest.raises(VaultError, match="not a keyturn vault value"):
        vault.decrypt(b"plaintext!", "account", 1, "secret_enc")


def test_key_of_wrong_size_is_refused() -> None:
    with pytest.raises(VaultError, match="32 bytes"):
        Vault(b"short")
