"""Finding 6: a host (or a banner, or SSH_CLIENT) never writes escape sequences to an operator's terminal.

ESC ] 52 sets the terminal's clipboard, ESC [ 2J clears the screen. Both are taken out where text comes in
(host output, SSH banners, the audit source) so nothing stored or shown holds them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from core import audit, hostkeys, ssh, textsafe
from core.config import Settings
from core.context import open_context
from storage.types import AssetInfo, HostKeyInfo, fingerprint_sha256
from tests.sandbox import SandboxHost

CLIPBOARD = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # OSC 52: put "echo pwned" on the clipboard
CLEAR = "\x1b[2J\x1b[H"
C1_CLIPBOARD = "\x9d52;c;ZWNobyBwd25lZA==\x9c"
EVIL = f"before{CLIPBOARD}{CLEAR}{C1_CLIPBOARD}\r\u202eafter"


def _no_controls(text: str) -> None:
    assert "\x1b" not in text and "\x9d" not in text and "\x07" not in text and "\r" not in text and "\u202e" not in text
    assert "ZWNobyBwd25lZA" not in text  # the clipboard payload went with its sequence


def test_clean_removes_whole_sequences_and_keeps_the_text() -> None:
    out = textsafe.clean(EVIL + "\nline two\tcol")
    _no_controls(out)
    assert out == "beforeafter\nline two\tcol"
    assert textsafe.clean_line("a\nb\tc" + CLEAR) == "a b c"
    assert textsafe.clean_value({"k": [EVIL], "n": 3}) == {"k": ["beforeafter"], "n": 3}


def _asset(h: SandboxHost) -> AssetInfo:
    key_type, b64 = h.host_key.split()[:2]
    return AssetInfo(id=1, name=h.name, address=h.address, port=h.port, platform="linux", active=True,
                     host_keys=(HostKeyInfo(key_type, b64, fingerprint_sha256(b64)),))


@pytest.mark.sshd
def test_host_output_arrives_without_escape_sequences(sandbox_host: SandboxHost) -> None:
    h = sandbox_host
    client = ssh.connect(_asset(h), "alice", password=h.passwords["alice"])
    try:
        printf = "printf 'out\\033]52;c;ZWNobyBwd25lZA==\\007\\033[2Jdone'; printf 'err\\033[2J\\033]0;title\\007!' >&2"
        code, out, err = ssh.run(client, printf, None, 30)
    finally:
        client.close()
    assert code == 0
    assert out == "outdone" and err == "err!"


@pytest.fixture
def evil_banner_server() -> Iterator[tuple[str, int]]:
    """A TCP server whose SSH banner carries escape sequences in its version field."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.sendall(f"SSH-{CLIPBOARD}{CLEAR}-evil\r\n".encode())
                    conn.recv(4096)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()
    stop.set()
    t.join()
    srv.close()


def test_a_banner_with_escapes_is_shown_clean_when_trusting(evil_banner_server: tuple[str, int]) -> None:
    address, port = evil_banner_server
    with pytest.raises(hostkeys.HostUnreachable) as caught:
        hostkeys.fetch_host_keys(address, port, timeout=5)
    _no_controls(str(caught.value))
    assert "did not complete an SSH handshake" in str(caught.value)


def test_a_banner_with_escapes_is_clean_in_a_connection_error(evil_banner_server: tuple[str, int]) -> None:
    address, port = evil_banner_server
    asset = AssetInfo(id=1, name="evil", address=address, port=port, platform="linux", active=True,
                      host_keys=(HostKeyInfo("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIC0=", "x"),))
    with pytest.raises(ssh.SSHError) as caught:
        ssh.connect(asset, "root", password="x", timeouts=ssh.Timeouts(5, 5, 5))
    _no_controls(str(caught.value))


def test_ssh_client_text_enters_the_audit_trail_clean(settings: Settings) -> None:
    ctx = open_context(settings, operator=f"tester{CLEAR}", source=f"ssh 10.0.0.1{CLIPBOARD} /dev/pts/1")
    try:
        audit.record_event(ctx, "asset.add", "asset", f"web1{CLEAR}", {"comment": EVIL})
        event = audit.list_events(ctx, limit=1)[0]
    finally:
        ctx.close()
    assert event.source == "ssh 10.0.0.1 /dev/pts/1"
    assert (event.actor, event.object_id, event.detail["comment"]) == ("tester", "web1", "beforeafter")
