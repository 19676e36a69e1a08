"""Fixtures for integration tests that need real OpenSSH sandbox hosts (see tests/sandbox.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from tests.sandbox import SandboxFleet, SandboxHost, require_sandbox

FleetFactory = Callable[..., SandboxFleet]


@pytest.fixture
def sandbox_fleet() -> Iterator[FleetFactory]:
    """Factory: ``sandbox_fleet(3, users=["alice", "bob"])`` -> started SandboxFleet, closed at teardown.

    Skips loudly when not root / sshd, unshare or nsenter are missing; fails instead if $CI is set.
    """
    require_sandbox()
    fleets: list[SandboxFleet] = []

    def factory(count: int = 1, users: Sequence[str] = (), password: str | None = None,
                base_dir: Path | None = None, **kwargs: object) -> SandboxFleet:
        """Start a fleet that is closed when the test ends."""
        fleet = SandboxFleet(count, users, password, base_dir, **kwargs)  # type: ignore[arg-type]
        fleets.append(fleet)
        return fleet

    yield factory
    errors: list[BaseException] = []
    for fleet in fleets:
        try:
            fleet.close()
        except BaseException as exc:  # close every fleet even if one fails
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def sandbox_host(sandbox_fleet: FleetFactory) -> SandboxHost:
    """One started sandbox host with users "alice" and "bob" (passwords in host.passwords)."""
    return sandbox_fleet(1, users=["alice", "bob"]).hosts[0]


# -- leak tests ----------------------------------------------------------------------------------------------
class ProcSampler:
    """Reads every distinct argv and environment of every process on the machine, from creation until stop().

    The leak tests (test_leaks.py, test_interactive_leaks.py, test_db_rotation.py) search what it saw for secrets.
    """

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                for name in ("cmdline", "environ"):
                    try:
                        with open(f"/proc/{pid}/{name}", "rb") as f:
                            self.seen.add(f.read())
                    except OSError:
                        pass
            self.passes += 1

    def stop(self) -> str:
        """Stop sampling; everything seen as text."""
        self._stop.set()
        self._thread.join(timeout=10)
        return b"\n".join(self.seen).decode(errors="replace")


# -- private database servers (tests/dbservers.py) ---------------------------------------------------------
def _db_server(kind: type, label: str) -> Iterator[object]:
    import os

    from tests.dbservers import ServerUnavailable

    try:
        server = kind()
    except ServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a private {label} server: {exc}")
        pytest.skip(f"SKIPPING {label} tests: {exc}")
    try:
        yield server
    finally:
        server.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_private() -> Iterator[object]:
    """A private PostgreSQL server (scram-sha-256, log_statement=all) for the whole session."""
    from tests.dbservers import PostgresServer

    yield from _db_server(PostgresServer, "PostgreSQL")


@pytest.fixture(scope="session")
def pg_tls_private() -> Iterator[object]:
    """A private PostgreSQL server that refuses connections without TLS (its CA in .ca_file)."""
    from tests.dbservers import PostgresServer

    yield from _db_server(lambda: PostgresServer(tls_only=True), "PostgreSQL (TLS only)")  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_tls_localhost() -> Iterator[object]:
    """A TLS-only private PostgreSQL server whose certificate names only `localhost` (not 127.0.0.1)."""
    from tests.dbservers import PostgresServer

    yield from _db_server(lambda: PostgresServer(tls_only=True, cert_names=("localhost",)),  # type: ignore[arg-type]
                          "PostgreSQL (TLS only, certificate for localhost)")


@pytest.fixture(scope="session")
def mariadb_private() -> Iterator[object]:
    """A private MariaDB server (password auth, general_log on) for the whole session."""
    from tests.dbservers import MariaDBServer

    yield from _db_server(MariaDBServer, "MariaDB")


@pytest.fixture(scope="session")
def mariadb_tls_localhost() -> Iterator[object]:
    """A private MariaDB server offering TLS with a certificate for `localhost` only (its CA in .ca_file)."""
    from tests.dbservers import MariaDBServer

    yield from _db_server(lambda: MariaDBServer(cert_names=("localhost",)),  # type: ignore[arg-type]
                          "MariaDB (TLS, certificate for localhost)")


@pytest.fixture(scope="session")
def redis_private() -> Iterator[object]:
    """A private Redis server with an ACL file for the whole session."""
    from tests.dbservers import RedisServer

    yield from _db_server(RedisServer, "Redis")


@pytest.fixture(scope="session")
def redis_tls_localhost() -> Iterator[object]:
    """A private Redis server speaking TLS only, with a certificate for `localhost` only (its CA in .ca_file)."""
    from tests.dbservers import RedisServer

    yield from _db_server(lambda: RedisServer(cert_names=("localhost",)),  # type: ignore[arg-type]
                          "Redis (TLS only, certificate for localhost)")
