"""The one parser of each value that reaches keyturn from several doors (inventory files, the CLI, the forms,
task files): platforms, ports, secret types and private keys. Everyone else imports these; nobody re-parses."""

from __future__ import annotations

from core.errors import InputError

PLATFORMS: tuple[str, ...] = ("linux", "unix", "aix", "postgresql", "mysql", "mariadb", "redis", "custom-ssh", "windows")
SECRET_TYPES: tuple[str, ...] = ("password", "ssh_key")
# Platforms reached with their own database protocol (core.drivers.dbconn), not over SSH.
DB_PLATFORMS = ("postgresql", "mysql", "mariadb", "redis")
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "redis": 6379}
TLS_MODES = ("disable", "require", "verify-full")
# Inventory platforms keyturn knows but cannot change secrets on: no such server can run here to prove a driver.
REJECTED_PLATFORMS = {
    "oracle": "Oracle is not supported: no Oracle server is available to test a driver against",
    "sqlserver": "SQL Server is not supported: no SQL Server is available to test a driver against",
    "mongodb": "MongoDB is not supported: no MongoDB server is available to test a driver against",
}
# How a task pushes an SSH key into authorized_keys (core.tasks).
KEY_STRATEGIES: tuple[str, ...] = ("replace-ours", "replace-all", "append")
# Inventory file formats (core.importer).
FORMATS: tuple[str, ...] = ("csv", "yaml", "ansible")


def is_database(platform: str) -> bool:
    """Whether platform is a database reached with its own protocol."""
    return platform in DB_PLATFORMS


class BadValue(InputError, ValueError):
    """An InputError that is also a ValueError, so parsers that collect ValueErrors per file line keep working."""


def parse_platform(value: str | None, *, default: str = "linux") -> str:
    """'Linux ' -> 'linux'; empty -> default; BadValue (field 'platform') for an unknown one."""
    text = (value or "").strip().lower() or default
    if text in REJECTED_PLATFORMS:
        raise BadValue(f"platform {text!r}: {REJECTED_PLATFORMS[text]}", field="platform")
    if text not in PLATFORMS:
        raise BadValue(f"unknown platform {text!r} (known: {', '.join(PLATFORMS)})", field="platform")
    return text


def parse_port(value: int | str) -> int:
    """A port number 1-65535; BadValue (field 'port') naming what was given otherwise."""
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise BadValue(f"port: {text!r} is not a number 1-65535", field="port")
    return int(text)


def parse_secret_type(value: str | None, *, default: str | None = "password") -> str:
    """'password' | 'ssh_key' | 'ssh-key' | 'key' -> the stored type; empty -> default (BadValue when None)."""
    text = (value or "").strip().lower().replace("-", "_")
    if not text and default is not None:
        return default
    if text == "key":
        text = "ssh_key"
    if text not in SECRET_TYPES:
        raise BadValue(f"unknown secret type {(value or '').strip()!r} (known: password, ssh_key)", field="type")
    return text


def load_key(data: bytes, password: bytes | None) -> object:
    """The cryptography key object of an OpenSSH or PEM private key (its own exceptions on failure)."""
    from cryptography.hazmat.primitives import serialization

    if b"BEGIN OPENSSH PRIVATE KEY" in data:
        return serialization.load_ssh_private_key(data, password)
    return serialization.load_pem_private_key(data, password)


def check_private_key(text: str, passphrase: str | None, what: str = "private key") -> None:
    """BadValue (field 'secret') unless text is a private key that the passphrase (if any) opens.

    This is the check for keys keyturn logs in with; a key keyturn pushes has stricter rules on top
    (core.secretgen.load_private_key: no DSA, RSA of 2048 bits at least).
    """
    pw = passphrase.encode() if passphrase else None
    try:
        load_key(text.encode(), pw)
    except TypeError:
        if pw is None:
            raise BadValue(f"{what} is encrypted and no passphrase was given", field="secret") from None
        raise BadValue(f"{what} is not encrypted but a passphrase was given", field="secret") from None
    except Exception:  # noqa: BLE001 - cryptography raises several types for garbage input
        if pw is not None:
            raise BadValue(f"{what} cannot be opened with the given passphrase (wrong passphrase or a damaged key)",
                           field="secret") from None
        raise BadValue(f"{what} is not a readable private key (OpenSSH or PEM)", field="secret") from None
