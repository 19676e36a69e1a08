"""Secret generation: random passwords obey their rules, keys load in paramiko, supplied secrets are checked."""

from __future__ import annotations

import io
import string

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InputError
from core.secretgen import (
    KEY_MARKER, check_specific_password, generate_password, generate_ssh_key, load_private_key, marked_public_line,
    validate_rules,
)
from storage.types import PasswordRules

CLASSES = {"lower": string.ascii_lowercase, "upper": string.ascii_uppercase, "digits": string.digits,
           "symbols": string.punctuation}


def _satisfiable(rules: PasswordRules) -> bool:
    enabled = [chars for name, chars in CLASSES.items() if getattr(rules, name)]
    pools = [set(chars) - set(rules.exclude) for chars in enabled]
    return bool(enabled) and all(pools) and 8 <= rules.length <= 128 and rules.length >= len(enabled)


rule_sets = st.builds(
    PasswordRules,
    length=st.integers(min_value=1, max_value=140),
    lower=st.booleans(), upper=st.booleans(), digits=st.booleans(), symbols=st.booleans(),
    # Random characters, sometimes a whole class plus some, so both satisfiable and unsatisfiable sets come up.
    exclude=st.one_of(st.text(alphabet=string.printable, max_size=40),
                      st.builds(str.__add__, st.sampled_from(list(CLASSES.values())),
                                st.text(alphabet=string.printable, max_size=10))),
)


@settings(max_examples=400, deadline=None)
@given(rule_sets)
def test_every_password_obeys_its_rules_or_the_rules_are_rejected(rules: PasswordRules) -> None:
    if not _satisfiable(rules):
        with pytest.raises(InputError):
            generate_password(rules)
        return
    pw = generate_password(rules)
    assert len(pw) == rules.length
    assert not set(pw) & set(rules.exclude)
    assert " " not in pw
    allowed = set()
    for name, chars in CLASSES.items():
        if getattr(rules, name):
            assert set(pw) & set(chars), f"{name} missing from a password under {rules}"
            allowed |= set(chars)
    assert set(pw) <= allowed


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(CLASSES)), st.integers(min_value=8, max_value=128))
def test_a_class_with_every_character_excluded_is_rejected_naming_exclude(name: str, length: int) -> None:
    rules = PasswordRules(length=length, exclude=CLASSES[name])
    with pytest.raises(InputError, match=rf"^exclude: .*'{name}'"):
        validate_rules(rules)


@pytest.mark.parametrize(("rules", "field"), [
    (PasswordRules(length=7), "length"),
    (PasswordRules(length=129), "length"),
    (PasswordRules(lower=False, upper=False, digits=False, symbols=False), "rules"),
    (PasswordRules(exclude=string.digits), "exclude"),
    (PasswordRules(length=8, lower=True, upper=True, digits=True, symbols=True, exclude=string.punctuation), "exclude"),
])
def test_unsatisfiable_rules_name_the_field(rules: PasswordRules, field: str) -> None:
    with pytest.raises(InputError) as err:
        validate_rules(rules)
    assert str(err.value).startswith(f"{field}: ")


def test_symbols_include_quotes_dollar_braces_and_backslash() -> None:
    seen: set[str] = set()
    rules = PasswordRules(length=128, lower=False, upper=False, digits=False, symbols=True)
    for _ in range(20):
        seen |= set(generate_password(rules))
    assert set("'\"$`{}\\") <= seen
    assert seen <= set(string.punctuation)


def test_passwords_differ_and_are_spread_over_the_alphabet() -> None:
    rules = PasswordRules(length=64, lower=False, upper=False, digits=True, symbols=False)
    passwords = [generate_password(rules) for _ in range(200)]
    assert len(set(passwords)) == 200
    counts = {d: sum(p.count(d) for p in passwords) for d in string.digits}
    # 12,800 digits: each appears 1,280 times on average; a biased generator drifts far outside this band.
    assert all(1000 < c < 1560 for c in counts.values()), counts


@pytest.mark.parametrize(("algorithm", "loader"), [("ed25519", paramiko.Ed25519Key), ("rsa4096", paramiko.RSAKey)])
def test_generated_keys_round_trip_through_paramiko(algorithm: str, loader: type) -> None:
    key = generate_ssh_key(algorithm, label="web rotation")
    assert key.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    pkey = loader.from_private_key(io.StringIO(key.private_openssh))
    key_type, b64, comment = key.public_line.split(" ")
    assert (key_type, b64) == (pkey.get_name(), pkey.get_base64())
    assert comment == f"{KEY_MARKER}:web-rotation"
    assert KEY_MARKER in key.public_line
    assert key.fingerprint == pkey.fingerprint  # paramiko's SHA256:... form
    if algorithm == "rsa4096":
        assert pkey.get_bits() == 4096
    assert key.private_openssh not in repr(key)


def test_loading_an_encrypted_key_checks_the_passphrase() -> None:
    raw = ed25519.Ed25519PrivateKey.generate()
    text = raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.BestAvailableEncryption(b"right horse")).decode()
    with pytest.raises(InputError, match="^private key: wrong passphrase$"):
        load_private_key(text, "wrong horse")
    with pytest.raises(InputError, match="^private key: is encrypted"):
        load_private_key(text, None)
    loaded = load_private_key(text, "right horse", label="t1")
    assert loaded.encrypted and loaded.algorithm == "ed25519"
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(loaded.private_openssh), password="right horse")
    assert loaded.public_line == f"ssh-ed25519 {pkey.get_base64()} {KEY_MARKER}:t1"


def test_loading_pem_rsa_keys_and_rejecting_junk() -> None:
    raw = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    loaded = load_private_key(pem, None)
    pkey = paramiko.RSAKey.from_private_key(io.StringIO(loaded.private_openssh))
    assert loaded.public_line.split()[1] == pkey.get_base64()
    with pytest.raises(InputError, match="^key passphrase: given, but the private key is not encrypted$"):
        load_private_key(pem, "pw")
    for junk in ("", "hello", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
                 generate_ssh_key().public_line):
        with pytest.raises(InputError, match="^private key: "):
            load_private_key(junk, None)
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(InputError, match="too short"):
        load_private_key(short, None)


def test_marked_public_line_replaces_the_comment() -> None:
    assert marked_public_line("ssh-ed25519 AAAAC3Nz user@laptop", "nightly") == f"ssh-ed25519 AAAAC3Nz {KEY_MARKER}:nightly"
    assert marked_public_line("ssh-ed25519 AAAAC3Nz") == f"ssh-ed25519 AAAAC3Nz {KEY_MARKER}"


@pytest.mark.parametrize("pw", ["a", "with space", "quotes'\"`", "$HOME {{ x }} \\n", "é ü 密码", "x" * 512, ":colon:"])
def test_specific_passwords_may_hold_any_printable_character(pw: str) -> None:
    check_specific_password(pw)


@pytest.mark.parametrize(("pw", "problem"), [
    ("", "is empty"), ("a\nb", "line break"), ("a\rb", "line break"), ("a\0b", "NUL"), ("x" * 513, "longer than 512"),
    ("tab\there", "control character U+0009"),
])
def test_specific_password_rejections_name_the_field(pw: str, problem: str) -> None:
    with pytest.raises(InputError) as err:
        check_specific_password(pw)
    assert str(err.value).startswith("password: ") and problem in str(err.value)
    assert pw not in str(err.value) or pw == ""


def test_draws_throw_away_the_biased_top_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below 100 from single bytes: 200-255 would make 0-55 likelier than 56-99, so they are read past."""
    from core import secretgen

    feed = iter([bytes([255, 200, 250, 7] + [0] * 252), bytes([199] + [0] * 255)])
    monkeypatch.setattr(secretgen.os, "urandom", lambda n: next(feed))
    draws = secretgen._Draws()
    assert draws.below(100) == 7  # 255, 200 and 250 rejected
    for _ in range(252):
        assert draws.below(100) == 0
    assert draws.below(100) == 99  # a new read once the first is used up: 199 % 100


def test_draws_are_uniform_over_a_range_that_does_not_divide_256() -> None:
    """Without the rejection, values below 56 of 100 would come 3/256 of the time and the rest 2/256 (1.5x)."""
    from core.secretgen import _Draws

    draws = _Draws()
    counts = [0] * 100
    for _ in range(60_000):
        counts[draws.below(100)] += 1
    low, high = sum(counts[:56]) / 56, sum(counts[56:]) / 44
    assert 0.93 < low / high < 1.07, (low, high)  # expected 600 each; 1.5 for the modulo-biased version
