"""Fixtures shared by every test: a private data directory, an open context, and the CLI as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.config import Settings, load_settings
from core.context import Context, open_context

if TYPE_CHECKING:
    from tests.sandbox import SandboxFleet, SandboxHost

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("sqlite", "postgresql")


# -- storage backends --------------------------------------------------------------------------------
# Tests marked both_backends run once on SQLite and once on a fresh PostgreSQL database of their own
# (created from a migrated template and dropped afterwards, on a private server each test process starts:
# tests/pg.py); the rest use SQLite.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backends", default=",".join(BACKENDS),
                     help="storage backends for tests marked both_backends (comma-separated: sqlite,postgresql)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run on SQLite and again on a fresh PostgreSQL database")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        chosen = [b.strip() for b in metafunc.config.getoption("--backends").split(",") if b.strip()]
        unknown = set(chosen) - set(BACKENDS)
        if unknown:
            raise pytest.UsageError(f"--backends: unknown backend(s) {sorted(unknown)}; choose from {BACKENDS}")
        metafunc.parametrize("backend", chosen, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend of this test run: sqlite unless the test is marked both_backends."""
    return getattr(request, "param", "sqlite")


def _no_postgresql(exc: Exception) -> None:
    """Skip loudly without a PostgreSQL server (fail under CI, which must have one)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the PostgreSQL server for the PostgreSQL tests: {exc}")
    pytest.skip(f"SKIPPING a PostgreSQL test (and the PostgreSQL half of the both-backends tests): {exc}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The tests' PostgreSQL server's version: a private cluster this test process starts (tests/pg.py), or the
    server KEYTURN_TEST_PG names. Skips loudly without one (never under CI, which must have it)."""
    from tests import pg

    private = None
    try:
        if not os.environ.get("KEYTURN_TEST_PG"):
            private = pg.use_private_server()
        version = pg.check_server()
    except pg.ServerUnavailable as exc:
        _no_postgresql(exc)
    try:
        yield version
    finally:
        if private is not None:
            pg.SERVER = pg.MACHINE_SERVER
            private.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_spares(pg_server: str) -> Iterator[object]:
    """Makes the next test's copy of pg_template while the current test runs (tests/pg.py Spares)."""
    from tests import pg

    spares = pg.Spares()
    try:
        yield spares
    finally:
        spares.finish()


@pytest.fixture(scope="session")
def pg_template(pg_server: str, pg_spares: object) -> Iterator[str]:
    """A database on the local PostgreSQL server migrated to head, copied for each test; dropped at the end."""
    from storage.db import Database
    from tests import pg

    name = pg.create_database()
    try:
        db = Database(pg.sqlalchemy_url(name))
        db.upgrade()
        db.close()
        yield name
    finally:
        pg_spares.finish()  # type: ignore[attr-defined]  # a spare copy still being made holds the template
        pg.drop_database(name)


@pytest.fixture
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database_url of a fresh, migrated PostgreSQL database for this test only."""
    from tests import pg

    template = request.getfixturevalue("pg_template")
    name = request.getfixturevalue("pg_spares").copy_of(template)
    try:
        yield pg.sqlalchemy_url(name)
    finally:
        pg.drop_database(name)


@pytest.fixture
def pg_empty(pg_server: str) -> Iterator[str]:
    """The database_url of a fresh PostgreSQL database with no schema at all; dropped afterwards."""
    from tests import pg

    name = pg.create_database()
    try:
        yield pg.sqlalchemy_url(name)
    finally:
        pg.drop_database(name)


@pytest.fixture
def pg_machine_empty() -> Iterator[str]:
    """The database_url of a fresh, empty database on the machine's own PostgreSQL server (pg.MACHINE_SERVER,
    durable, as a deployment's would be); dropped afterwards."""
    from tests import pg

    try:
        pg.check_server(pg.MACHINE_SERVER)
    except pg.ServerUnavailable as exc:
        _no_postgresql(exc)
    name = pg.create_database(server=pg.MACHINE_SERVER)
    try:
        yield pg.sqlalchemy_url(name, pg.MACHINE_SERVER)
    finally:
        pg.drop_database(name, pg.MACHINE_SERVER)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    """database_url for this test's keyturn: empty (SQLite in the data directory) or a fresh PostgreSQL one."""
    return request.getfixturevalue("pg_database") if backend == "postgresql" else ""


@pytest.fixture
def keyturn_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """Environment for a keyturn process with its own data and config directories."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update(KEYTURN_HOME=str(home), KEYTURN_CONFIG=str(tmp_path / "config.toml"), KEYTURN_OPERATOR="tester",
               XDG_CONFIG_HOME=str(tmp_path / "xdg-config"), XDG_DATA_HOME=str(tmp_path / "xdg-data"),
               # A push's host-enforced deadline is command_timeout + margins (70 s by default): crash tests wait
               # for it before reconcile may judge a record. 15 s keeps them short; a test may set its own.
               KEYTURN_COMMAND_TIMEOUT="15")
    if database_url:
        env["KEYTURN_DATABASE_URL"] = database_url
    return env


@pytest.fixture
def settings(keyturn_env: dict[str, str]) -> Settings:
    """Settings pointing at the test's private data directory."""
    return load_settings(env=keyturn_env)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head and holding nothing else (no key, no vault), made once per test process.

    Migrating costs about a third of a second per database (more under load); tests that only need a fresh,
    empty database start from a copy (seed_database). The migrations themselves are tested from an empty file
    (tests/unit/test_migrations.py and every test that opens a data directory of its own).
    """
    from storage.db import Database

    path = tmp_path_factory.mktemp("sqlite-template") / "keyturn.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.close()
    leftovers = [p.name for p in path.parent.iterdir() if p != path and p.stat().st_size]
    assert not leftovers, f"the template's journal was not folded into the file: {leftovers}"
    return path


def seed_database(settings: Settings, request: pytest.FixtureRequest) -> None:
    """Give a new SQLite data directory a copy of the migrated template, as the first open would have made it:
    directory 0700, file 0600. A PostgreSQL run (pg_database is already a copy of a template) or a directory
    that already has a database is left alone."""
    import shutil

    if settings.database_url or settings.db_path.exists():
        return
    template = request.getfixturevalue("sqlite_template")
    settings.home.mkdir(parents=True, mode=0o700, exist_ok=True)
    settings.home.chmod(0o700)
    shutil.copyfile(template, settings.db_path)
    settings.db_path.chmod(0o600)


@pytest.fixture
def ctx(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Context]:
    """An open keyturn context on a fresh SQLite database."""
    seed_database(settings, request)
    context = open_context(settings, operator="tester", source="pytest")
    try:
        yield context
    finally:
        context.close()


def _run_forked(args: tuple[str, ...], input: str | None, env: dict[str, str],
                timeout: float) -> subprocess.CompletedProcess[str]:
    """`keyturn ARGS` in a child forked from this test process (tui.cli already imported).

    A real process boundary (its own environment, stdin, stdout, stderr, exit code, umask and signals), without
    the second of interpreter start and imports that `python -m tui` costs per call. The child never finalizes
    the parent's objects (garbage collection off, os._exit), so inherited database handles stay untouched.
    """
    import gc
    import tempfile

    from tui import cli

    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        fin.write((input or "").encode())
        fin.seek(0)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                gc.disable()
                os.dup2(fin.fileno(), 0)
                os.dup2(fout.fileno(), 1)
                os.dup2(ferr.fileno(), 2)
                os.chdir(ROOT)
                os.environ.clear()
                os.environ.update(env)
                sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.argv = ["keyturn", *args]
                import logging

                for name in ("", "keyturn"):
                    logging.getLogger(name).handlers.clear()  # pytest's capture handlers stay in the parent
                try:
                    code = cli.main(list(args))
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                    if exc.code is not None and not isinstance(exc.code, int):
                        print(exc.code, file=sys.stderr)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code if isinstance(code, int) else 1)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired(["keyturn", *args], timeout)
            time.sleep(0.005)
        fout.seek(0)
        ferr.seek(0)
        return subprocess.CompletedProcess(["keyturn", *args], os.waitstatus_to_exitcode(status),
                                           fout.read().decode(), ferr.read().decode())


@pytest.fixture
def keyturn_cli(keyturn_env: dict[str, str]):
    """Run the real `keyturn` command in its own process: keyturn_cli("asset", "list", input=..., check=True).

    The process is forked from the test process (see _run_forked); KEYTURN_TEST_SUBPROCESS=1 runs
    `python -m tui` instead, as a user does.
    """

    def run(*args: str, input: str | None = None, check: bool = False, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        full_env = {**keyturn_env, **(env or {})}
        if os.environ.get("KEYTURN_TEST_SUBPROCESS"):
            proc = subprocess.run([sys.executable, "-m", "tui", *args], input=input, capture_output=True, text=True,
                                  env=full_env, cwd=ROOT, timeout=timeout)
        else:
            proc = _run_forked(args, input, full_env, timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"keyturn {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    return run


# -- sandbox fleets shared by a module (integration and fault tests) -------------------------------------
# A module that reuses one fleet across its tests declares it with these factories instead of its own copy:
#     fleet = module_fleet(2, USERS)
#     hosts = fresh_hosts(USERS)                      # or: host = fresh_host(USERS, prepare=...)
def module_fleet(count: int, users: Sequence[str], doc: str | None = None):  # noqa: ANN201 (a pytest fixture)
    """A module-scoped fixture `fleet`: a started SandboxFleet of `count` hosts with `users`, closed after the module.

    Skips loudly without root / sshd (fails under CI), as require_sandbox does.
    """

    @pytest.fixture(scope="module", name="fleet")
    def fleet() -> Iterator[SandboxFleet]:
        from tests.sandbox import SandboxFleet, require_sandbox

        require_sandbox()
        with SandboxFleet(count, users=list(users)) as f:
            yield f

    fleet.__doc__ = doc or f"{count} sandbox host(s) with {', '.join(users)}, shared by the module."
    return fleet


def fresh_hosts(users: Sequence[str], prepare: Callable[[list[SandboxHost]], object] | None = None,
                doc: str | None = None):  # noqa: ANN201 (a pytest fixture)
    """A fixture `hosts`: the module's `fleet`, each host reset (reset_host with `users`), then `prepare(hosts)`."""

    @pytest.fixture(name="hosts")
    def hosts(fleet: SandboxFleet) -> list[SandboxHost]:
        from tests.integration.test_rotation import reset_host

        reset = list(fleet)
        for h in reset:
            reset_host(h, users)
        if prepare is not None:
            prepare(reset)
        return reset

    hosts.__doc__ = doc or "The fleet's hosts, reset to a known state."
    return hosts


def fresh_host(users: Sequence[str], prepare: Callable[[SandboxHost], object] | None = None,
               doc: str | None = None, remove_users: Sequence[str] = ()):  # noqa: ANN201 (a pytest fixture)
    """A fixture `host`: the first host of the module's `fleet`, reset (reset_host with `users`), without the
    users `remove_users` (a test may have created them), then `prepare(host)`."""

    @pytest.fixture(name="host")
    def host(fleet: SandboxFleet) -> SandboxHost:
        from tests.integration.test_rotation import reset_host

        h = fleet.hosts[0]
        reset_host(h, users)
        for u in remove_users:
            # A session of the previous test may still hold the user for a moment ("currently used by process").
            deadline = time.monotonic() + 60
            while h.run(["id", u]).returncode == 0:
                assert time.monotonic() < deadline, f"{h.name}: user {u} could not be removed"
                if h.run(["userdel", "-r", u]).returncode != 0:
                    time.sleep(0.2)
        if prepare is not None:
            prepare(h)
        return h

    host.__doc__ = doc or "The host, reset to a known state."
    return host
