"""Host key trust against real sandbox sshd hosts: `asset trust`, changed keys, and known_hosts import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.context import Context
from core.hostkeys import fetch_host_keys
from storage.inventory import get_asset, upsert_asset
from tests.conftest import ROOT


def ssh_keygen_fingerprint(key_line: str) -> str:
    """The fingerprint OpenSSH itself computes for a public key line (independent of our code)."""
    out = subprocess.run(["ssh-keygen", "-lf", "-"], input=key_line + "\n", capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


def pinned(ctx: Context, name: str) -> list[str]:
    """Fingerprints pinned on an asset in the database the CLI writes to."""
    return [k.fingerprint for k in get_asset(ctx.db, name).host_keys]


def add_asset(ctx: Context, host) -> None:  # type: ignore[no-untyped-def]
    """The sandbox host as an asset (the CLI's `asset add` has its own tests)."""
    with ctx.db.write() as s:
        upsert_asset(s, host.name, address=host.address, port=host.port)


def test_trust_pins_what_the_host_serves_and_refuses_a_changed_key(sandbox_fleet, keyturn_cli, ctx) -> None:
    host = sandbox_fleet(1)[0]
    assert fetch_host_keys(host.address, host.port, timeout=10) == [tuple(host.host_key.split()[:2])]
    add_asset(ctx, host)
    first = ssh_keygen_fingerprint(host.host_key)

    asked = keyturn_cli("asset", "trust", "h1")  # no terminal, no --yes: shows the key, pins nothing
    assert asked.returncode == 1 and first in asked.stdout and "pass --yes" in asked.stderr
    assert pinned(ctx, "h1") == []

    done = keyturn_cli("asset", "trust", "h1", "--yes", check=True)
    assert f"ssh-ed25519            {first}" in done.stdout
    assert pinned(ctx, "h1") == [first]
    assert "already pinned" in keyturn_cli("asset", "trust", "h1", "--yes", check=True).stdout

    new_key = host.replace_host_key()
    second = ssh_keygen_fingerprint(new_key)
    refused = keyturn_cli("asset", "trust", "h1", "--yes")
    assert refused.returncode == 5
    assert first in refused.stderr and second in refused.stderr and "man-in-the-middle" in refused.stderr
    assert "the pinned key was kept" in refused.stderr and "Traceback" not in refused.stderr
    assert pinned(ctx, "h1") == [first]

    keyturn_cli("asset", "trust", "h1", "--yes", "--accept-changed", check=True)
    assert pinned(ctx, "h1") == [second]
    assert ssh_keygen_fingerprint(host.served_host_key()) == second


def run_on_terminal(keyturn_env: dict[str, str], args: list[str], typed: str) -> tuple[int, str]:
    """Run keyturn with a real pseudo-terminal as stdin, type a line, return exit code and output."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tui", *args], stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=keyturn_env, cwd=ROOT, text=True)
        os.write(master, typed.encode() + b"\n")
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out
    finally:
        os.close(master)
        os.close(slave)


def test_changed_key_needs_the_word_replace_typed_on_the_terminal(sandbox_fleet, keyturn_cli, keyturn_env, ctx) -> None:
    host = sandbox_fleet(1)[0]
    add_asset(ctx, host)
    code, out = run_on_terminal(keyturn_env, ["asset", "trust", "h1"], "y")
    assert code == 0 and "Pin this key? [y/N]" in out
    old = ssh_keygen_fingerprint(host.host_key)
    new = ssh_keygen_fingerprint(host.replace_host_key())
    code, out = run_on_terminal(keyturn_env, ["asset", "trust", "h1"], "y")  # a plain "y" is not enough here
    assert code == 5 and old in out and new in out and "Type 'replace'" in out
    assert pinned(ctx, "h1") == [old]
    code, out = run_on_terminal(keyturn_env, ["asset", "trust", "h1"], "replace")
    assert code == 0 and pinned(ctx, "h1") == [new]


def test_known_hosts_import_plain_hashed_and_port_entries(sandbox_fleet, keyturn_cli, ctx, tmp_path: Path) -> None:
    fleet = sandbox_fleet(3)
    for h in fleet:
        add_asset(ctx, h)
    h1, h2, h3 = fleet
    # h2's entry hashed by OpenSSH itself (ssh-keygen -H), h1's plain with the [addr]:port syntax
    hashed = tmp_path / "hashed"
    hashed.write_text(h2.known_hosts_line + "\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], capture_output=True, check=True)
    hashed_line = hashed.read_text().strip()
    assert hashed_line.startswith("|1|") and h2.address not in hashed_line
    other = h3.host_key  # a real key, listed for a host that is no asset (and h3 at the wrong port)
    known = tmp_path / "known_hosts"
    known.write_text(f"# my known hosts\n{h1.known_hosts_line}\n{hashed_line}\n"
                     f"[{h3.address}]:{h3.port + 1} {other}\nunrelated.example.org {other}\n")

    out = keyturn_cli("import", "--known-hosts", str(known), check=True).stdout
    assert "2 host keys pinned" in out
    assert f"{known}:4: skipped: no asset at [{h3.address}]:{h3.port + 1}" in out
    assert f"{known}:5: skipped: no asset at unrelated.example.org" in out
    assert pinned(ctx, "h1") == [ssh_keygen_fingerprint(h1.served_host_key())]
    assert pinned(ctx, "h2") == [ssh_keygen_fingerprint(h2.served_host_key())]
    assert pinned(ctx, "h3") == []
    assert "nothing changed (2 unchanged)" in keyturn_cli("import", "--known-hosts", str(known), check=True).stdout

    # A known_hosts key that contradicts a pinned one is reported, never pinned next to it.
    h1.replace_host_key()
    known.write_text(h1.known_hosts_line + "\n")
    out = keyturn_cli("import", "--known-hosts", str(known), check=True).stdout
    assert "already has a different ssh-ed25519 key pinned" in out
    assert len(pinned(ctx, "h1")) == 1
