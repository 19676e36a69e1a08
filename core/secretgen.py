"""New secrets: random passwords under rules, SSH key pairs, and checks of secrets a person supplies.

Randomness comes only from the kernel (`os.urandom`, through `secrets` and `_Draws`), never from `random`.
Symbols are every printable ASCII punctuation character (string.punctuation), quotes, `$`, braces and the
backslash included: drivers pass secrets on stdin, never through a shell, so no character needs avoiding.
A space is never generated: it is easy to lose when a person copies a password, and some login prompts
strip it; a specific password supplied by a person may contain spaces.
"""

from __future__ import annotations

import functools
import os
import re
import string
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from core.errors import InputError
from core.values import load_key
from storage.types import PasswordRules, fingerprint_sha256

MIN_LENGTH = 8
MAX_LENGTH = 128
MAX_SPECIFIC_PASSWORD = 512
KEY_ALGORITHMS = ("ed25519", "rsa4096")

# Put in the comment of every public key keyturn pushes; `replace-ours` removes only lines carrying it.
KEY_MARKER = "keyturn-managed"

CLASSES: dict[str, str] = {
    "lower": string.ascii_lowercase,
    "upper": string.ascii_uppercase,
    "digits": string.digits,
    "symbols": string.punctuation,
}



class _Draws:
    """Uniform integers below n, taken from one os.urandom read at a time by rejection sampling (a value of
    the top partial range is thrown away, so no result is likelier than another: no modulo bias).

    secrets.choice and SystemRandom.shuffle read the kernel once per character: a run's 400 passwords made
    some 20,000 reads, 60 ms before its first host was touched. This reads 256 bytes per password.
    """

    CHUNK = 256

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def below(self, n: int) -> int:
        """A uniform integer in [0, n), 1 <= n <= 65536."""
        if not 1 <= n <= 65536:
            raise ValueError(f"n must be 1 to 65536, got {n}")
        width = 1 if n <= 256 else 2
        limit = (256**width // n) * n  # values at or above it would favour the low results
        while True:
            if self._pos + width > len(self._buf):
                self._buf, self._pos = os.urandom(self.CHUNK), 0
            value = int.from_bytes(self._buf[self._pos : self._pos + width], "big")
            self._pos += width
            if value < limit:
                return value % n

    def choice(self, seq: str) -> str:
        """A uniformly chosen character of seq."""
        return seq[self.below(len(seq))]

    def shuffle(self, items: list[str]) -> None:
        """Fisher-Yates in place: every order equally likely."""
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


# -- passwords -------------------------------------------------------------------------------------
def class_pools(rules: PasswordRules) -> dict[str, str]:
    """Characters each enabled class may still use after the exclusions."""
    excluded = set(rules.exclude or "")
    return {name: "".join(c for c in chars if c not in excluded)
            for name, chars in CLASSES.items() if getattr(rules, name)}


def validate_rules(rules: PasswordRules) -> dict[str, str]:
    """The rules' class pools (class_pools); InputError naming the field when no password can satisfy them."""
    length = rules.length
    if isinstance(length, bool) or not isinstance(length, int):
        raise InputError(f"length: must be a whole number, got {length!r}", field="length")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise InputError(f"length: must be {MIN_LENGTH} to {MAX_LENGTH}, got {length}", field="length")
    if not isinstance(rules.exclude, str):
        raise InputError("exclude: must be a string of characters", field="exclude")
    pools = class_pools(rules)
    if not pools:
        raise InputError("rules: enable at least one character class (lower, upper, digits, symbols)", field="rules")
    for name, pool in pools.items():
        if not pool:
            raise InputError(f"exclude: removes every character of the enabled class {name!r}; "
                             f"disable {name} or exclude fewer characters", field="exclude")
    if length < len(pools):
        raise InputError(f"length: {length} is shorter than the {len(pools)} required character classes", field="length")
    return pools


def generate_password(rules: PasswordRules) -> str:
    """A random password with every enabled class at least once and no excluded character."""
    try:
        pools = _checked_pools(rules)
    except TypeError:  # rules with an unhashable field: checked (and refused) without the cache
        pools = validate_rules(rules)
    # One from each class guarantees presence; the rest is uniform over the union (no modulo bias, see
    # _Draws), and a uniform shuffle hides where the guaranteed characters sit.
    draws = _Draws()
    chars = [draws.choice(pool) for pool in pools.values()]
    everything = "".join(pools.values())
    chars += [draws.choice(everything) for _ in range(rules.length - len(chars))]
    draws.shuffle(chars)
    return "".join(chars)


@functools.lru_cache(maxsize=32)
def _checked_pools(rules: PasswordRules) -> dict[str, str]:
    """validate_rules, once per rules: a run generates hundreds of passwords under the same ones."""
    return validate_rules(rules)


def check_specific_password(pw: str, field: str = "password") -> None:
    """Raise InputError("password: ...") for a password a host cannot take as typed (field names it)."""
    if pw is None or pw == "":
        raise InputError(f"{field}: is empty", field=field)
    if not isinstance(pw, str):
        raise InputError(f"{field}: must be text", field=field)
    if len(pw) > MAX_SPECIFIC_PASSWORD:
        raise InputError(f"{field}: longer than {MAX_SPECIFIC_PASSWORD} characters ({len(pw)})", field=field)
    if "\n" in pw or "\r" in pw:
        raise InputError(f"{field}: contains a line break", field=field)
    if "\0" in pw:
        raise InputError(f"{field}: contains a NUL character", field=field)
    # chpasswd and login prompts read lines of text: other control characters (tab, escape) would be
    # taken differently by different hosts, so only printable characters (spaces included) are allowed.
    bad = next((c for c in pw if not (c == " " or c.isprintable())), None)
    if bad is not None:
        raise InputError(f"{field}: contains the control character U+{ord(bad):04X}", field=field)


# -- SSH keys --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratedKey:
    """An SSH key pair: the private key in OpenSSH form, its public line and fingerprint."""

    private_openssh: str = field(repr=False)
    public_line: str
    fingerprint: str
    algorithm: str = ""
    encrypted: bool = False


def _comment_label(label: str | None) -> str:
    if not label:
        return KEY_MARKER
    # authorized_keys comments end at whitespace; keep the label one word.
    return KEY_MARKER + ":" + re.sub(r"\s+", "-", label.strip())


def marked_public_line(public_line: str, label: str | None = None) -> str:
    """The public key line with its comment replaced by KEY_MARKER (and an optional label such as a task name)."""
    parts = public_line.split()
    if len(parts) < 2:
        raise InputError("public key: not an OpenSSH public key line", field="public key")
    return f"{parts[0]} {parts[1]} {_comment_label(label)}"


def _public_line(key: object, label: str | None) -> tuple[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)  # type: ignore[attr-defined]
    key_type, b64 = raw.decode().split()[:2]
    return f"{key_type} {b64} {_comment_label(label)}", fingerprint_sha256(b64)


def _algorithm_of(key: object) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ecdsa{key.curve.key_size}"
    return type(key).__name__


def generate_ssh_key(algorithm: str = "ed25519", label: str | None = None) -> GeneratedKey:
    """A fresh, unencrypted key pair; the public line's comment carries KEY_MARKER (and label)."""
    if algorithm == "ed25519":
        key: object = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "rsa4096":
        key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    else:
        raise InputError(f"key algorithm: must be one of {', '.join(KEY_ALGORITHMS)}, got {algorithm!r}", field="key algorithm")
    private = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    line, fp = _public_line(key, label)
    return GeneratedKey(private_openssh=private, public_line=line, fingerprint=fp, algorithm=algorithm)


def load_private_key(text: str, passphrase: str | None, label: str | None = None) -> GeneratedKey:
    """Check a supplied private key and its passphrase; return it with its marked public line.

    private_openssh keeps the text as given (still encrypted when it was), so the passphrase stays needed.
    """
    if not text or not text.strip():
        raise InputError("private key: is empty", field="private key")
    data = text.strip().encode() + b"\n"
    if b"PRIVATE KEY-----" not in data:
        raise InputError("private key: not an OpenSSH or PEM private key", field="private key")
    passphrase = passphrase or None
    encrypted = False
    try:
        key = load_key(data, None)
    except TypeError:
        # cryptography raises TypeError when the key is encrypted and no password was given.
        encrypted = True
    except Exception:  # noqa: BLE001 - any parse failure (ValueError, UnsupportedAlgorithm) is the same user error
        raise InputError("private key: not an OpenSSH or PEM private key", field="private key") from None
    if encrypted:
        if passphrase is None:
            raise InputError("private key: is encrypted; give its passphrase", field="private key")
        try:
            key = load_key(data, passphrase.encode())
        except (ValueError, TypeError):
            raise InputError("private key: wrong passphrase", field="private key") from None
        except Exception:  # noqa: BLE001 - e.g. an unsupported cipher
            raise InputError("private key: cannot be decrypted (unsupported encryption)", field="private key") from None
    elif passphrase is not None:
        raise InputError("key passphrase: given, but the private key is not encrypted", field="key passphrase")
    if isinstance(key, dsa.DSAPrivateKey):
        raise InputError("private key: DSA keys are not supported (OpenSSH disabled them)", field="private key")
    if not isinstance(key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise InputError(f"private key: unsupported key type {type(key).__name__}", field="private key")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise InputError(f"private key: RSA key of {key.key_size} bits is too short (2048 at least)", field="private key")
    line, fp = _public_line(key, label)
    return GeneratedKey(private_openssh=data.decode(), public_line=line, fingerprint=fp,
                        algorithm=_algorithm_of(key), encrypted=encrypted)
