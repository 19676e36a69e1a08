"""Private database servers with real password authentication, started by the tests and removed afterwards.

The machine's own servers (PostgreSQL on 5432 with trust, MariaDB on 3306 with an empty root password, Redis
on 6379 without a password) cannot prove a rotation: a server that lets anyone in accepts the old password as
well as the new one. So each server here is a private instance on a free loopback port, in a temporary
directory, with statement logging fully on so the leak tests can read what the server saw:

- PostgreSQL: `initdb` + `pg_ctl` as the `postgres` OS user (initdb refuses root), scram-sha-256 in pg_hba,
  `log_statement=all`; superuser `postgres` with a random password.
- MariaDB: `mariadb-install-db` + `mariadbd --datadir` as the `mysql` OS user, its own socket and port,
  `general_log` on; an admin `keyturn_admin@%` with every privilege and GRANT OPTION.
- Redis: `redis-server --port N --aclfile F`; an admin ACL user allowed everything, `default` with a password.

Every server can be stopped and started again (a "server down mid-run" test) and told to trust a role
(PostgreSQL), which is how the trust-auth detection is tested.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

import psycopg
import pymysql
import redis as redis_lib
from psycopg import sql


class ServerUnavailable(Exception):
    """The server cannot be started here (a tool or OS user is missing); the message says which."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen | None, log: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise ServerUnavailable(f"server exited with {proc.returncode}: {_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise ServerUnavailable(f"server did not listen on port {port} within {timeout:.0f}s: {_tail(log)}")


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _owned_dir(parent: Path, name: str, user: str) -> Path:
    d = parent / name
    d.mkdir(mode=0o700)
    pw = pwd.getpwnam(user)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def _as_user(user: str) -> dict:
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _base_dir(kind: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=f"keyturn-{kind}-"))
    base.chmod(0o755)  # the server's OS user must reach its own subdirectory
    return base


# -- PostgreSQL --------------------------------------------------------------------------------------------
def _pg_bin() -> Path:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise ServerUnavailable("no initdb under /usr/lib/postgresql/*/bin (install postgresql)")
    return Path(found[-1]).parent


class PostgresServer:
    """A private PostgreSQL cluster on a free port with scram-sha-256 password authentication."""

    OS_USER = "postgres"

    def __init__(self, *, tls_only: bool = False, cert_names: tuple[str, ...] = ()) -> None:
        try:
            pwd.getpwnam(self.OS_USER)
        except KeyError:
            raise ServerUnavailable("no `postgres` OS user to run initdb as") from None
        self.bin = _pg_bin()
        self.base = _base_dir("pg")
        self.data = _owned_dir(self.base, "data", self.OS_USER)
        self.run_dir = _owned_dir(self.base, "run", self.OS_USER)
        self.log = self.base / "run" / "server.log"
        self.port = free_port()
        self.admin_user = "postgres"
        self.admin_password = "adm-" + secrets.token_urlsafe(18)
        pwfile = self.run_dir / "pw"
        pwfile.write_text(self.admin_password + "\n")
        os.chown(pwfile, *(pwd.getpwnam(self.OS_USER)[2:4]))
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.admin_user, f"--pwfile={pwfile}",
                   "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
        pwfile.unlink()
        self._trusted: list[str] = []
        self.tls_only = tls_only
        self.ca_file = ""
        if tls_only:
            self.ca_file = str(self.base / "ca.pem")
            _self_signed(Path(self.ca_file), self.data / "server.crt", self.data / "server.key", self.OS_USER,
                         cert_names)
            with (self.data / "postgresql.conf").open("a") as f:
                f.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        self._write_hba()
        self.start()

    def _run(self, argv: list[str]) -> None:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120, **_as_user(self.OS_USER))
        if res.returncode != 0:
            raise ServerUnavailable(f"{Path(argv[0]).name} failed: {res.stderr.strip()[-1500:]}")

    def _write_hba(self) -> None:
        lines = [f"host all {role} 127.0.0.1/32 trust" for role in self._trusted]
        if self.tls_only:
            lines += ["local all all scram-sha-256", "hostssl all all 127.0.0.1/32 scram-sha-256",
                      "hostnossl all all 127.0.0.1/32 reject"]
        else:
            lines += ["local all all scram-sha-256", "host all all 127.0.0.1/32 scram-sha-256"]
        (self.data / "pg_hba.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start (or restart after stop) the server and wait until it accepts connections."""
        opts = (f"-p {self.port} -k {self.run_dir} -c listen_addresses=127.0.0.1 -c log_statement=all "
                "-c log_connections=on -c fsync=off -c password_encryption=scram-sha-256")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60",
                   "start"])

    def stop(self) -> None:
        """Stop the server at once (sessions are cut)."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def trust(self, role: str | None) -> None:
        """Let role in with any password (trust), or with None go back to passwords for everyone."""
        self._trusted = [role] if role else []
        self._write_hba()
        with self.admin() as conn:
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)  # the postmaster rereads pg_hba.conf on SIGHUP, asynchronously

    def admin(self) -> psycopg.Connection:
        """An autocommit superuser connection."""
        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.admin_user, password=self.admin_password,
                               dbname="postgres", autocommit=True, connect_timeout=10,
                               sslmode="require" if self.tls_only else "prefer")

    def create_role(self, name: str, password: str, *, superuser: bool = False, createrole: bool = False) -> None:
        """CREATE ROLE name LOGIN with password (dropped first if it exists)."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            extra = sql.SQL(" SUPERUSER" if superuser else "") + sql.SQL(" CREATEROLE" if createrole else "")
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
                         + extra)

    def can_login(self, user: str, password: str) -> bool:
        """Whether user logs in with password (False on an authentication failure)."""
        try:
            psycopg.connect(host="127.0.0.1", port=self.port, user=user, password=password, dbname="postgres",
                            connect_timeout=10, sslmode="require" if self.tls_only else "prefer").close()
            return True
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc) or "does not exist" in str(exc):
                return False
            raise

    def server_log(self) -> str:
        """Everything the server logged (log_statement=all)."""
        return _tail(self.log, 10**9)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.stop()
        except (ServerUnavailable, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.base, ignore_errors=True)



class StoragePostgresServer(PostgresServer):
    """A private cluster for keyturn's own storage in the tests (tests/pg.py), not a rotation target.

    Trust for the user postgres on 127.0.0.1, as on the machine's server. Durability is off (fsync,
    synchronous_commit, full_page_writes): a test database lives for one test, and the DROP DATABASE after each
    test then checkpoints to memory instead of to disk. No statement log: nothing here is read for leaks.
    """

    def _write_hba(self) -> None:
        (self.data / "pg_hba.conf").write_text(f"host all {self.admin_user} 127.0.0.1/32 trust\n")

    def start(self) -> None:
        """Start (or restart after stop) the server and wait until it accepts connections."""
        opts = (f"-p {self.port} -k {self.run_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60",
                   "start"])

def _self_signed(ca_path: Path, cert_path: Path, key_path: Path, owner: str, names: tuple[str, ...] = ()) -> None:
    """A CA and a server certificate signed by it (the key readable by owner only): for the DNS names given,
    else for the address 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyturn test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = ([x509.DNSName(n) for n in names] if names
                                   else [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False).sign(ca_key, hashes.SHA256()))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    ca_path.chmod(0o644)  # public, and the server's OS user reads it whatever umask this process has
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pw = pwd.getpwnam(owner)
    for p in (cert_path, key_path):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    key_path.chmod(0o600)


class _ChildServer:
    """A server that runs as this process's child (self.proc, set by start())."""

    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        """Kill the server at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None


# -- MariaDB -----------------------------------------------------------------------------------------------
class MariaDBServer(_ChildServer):
    """A private MariaDB server on a free port and its own socket, general_log on."""

    OS_USER = "mysql"

    def __init__(self, *, cert_names: tuple[str, ...] = ()) -> None:
        install = shutil.which("mariadb-install-db")
        self.mariadbd = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None)
        if not install or not self.mariadbd:
            raise ServerUnavailable("mariadb-install-db or mariadbd is missing (install mariadb-server)")
        try:
            pwd.getpwnam(self.OS_USER)
        except KeyError:
            raise ServerUnavailable("no `mysql` OS user to run mariadbd as") from None
        self.base = _base_dir("mariadb")
        self.data = _owned_dir(self.base, "data", self.OS_USER)
        self.run_dir = _owned_dir(self.base, "run", self.OS_USER)
        self.socket = self.run_dir / "mysqld.sock"
        self.log = self.run_dir / "error.log"
        self.general_log = self.run_dir / "general.log"
        self.port = free_port()
        self.admin_user = "keyturn_admin"
        self.admin_password = "adm-" + secrets.token_urlsafe(18)
        # Its own temporary directory: bootstraps running at once (pytest-xdist workers) collide in /tmp.
        self.tmp = _owned_dir(self.base, "tmp", self.OS_USER)
        res = subprocess.run([install, "--no-defaults", f"--datadir={self.data}", f"--user={self.OS_USER}",
                              "--auth-root-authentication-method=normal", "--skip-test-db"],
                             capture_output=True, text=True, timeout=180, env={**os.environ, "TMPDIR": str(self.tmp)})
        if res.returncode != 0:
            raise ServerUnavailable(f"mariadb-install-db failed: {res.stderr.strip()[-1500:]}")
        self.proc: subprocess.Popen | None = None
        # With cert_names: TLS offered with a certificate for those DNS names (its CA in .ca_file).
        self.ca_file = ""
        self._tls_args: list[str] = []
        if cert_names:
            self.ca_file = str(self.run_dir / "ca.pem")  # where the mysql OS user can read it
            cert, key = self.run_dir / "server.crt", self.run_dir / "server.key"
            _self_signed(Path(self.ca_file), cert, key, self.OS_USER, cert_names)
            self._tls_args = [f"--ssl-cert={cert}", f"--ssl-key={key}", f"--ssl-ca={self.ca_file}"]
        self.start()
        conn = pymysql.connect(unix_socket=str(self.socket), user="root", password="", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS ''@'localhost'")
            cur.execute(f"DROP USER IF EXISTS ''@'{socket.gethostname()}'")
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (self.admin_user, self.admin_password))
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (self.admin_user,))
            cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (self.admin_password,))
        conn.close()

    def start(self) -> None:
        """Start (or restart after stop) the server and wait for its port."""
        self.proc = subprocess.Popen(
            [self.mariadbd, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--user={self.OS_USER}", f"--log-error={self.log}", "--skip-name-resolve",
             f"--tmpdir={self.tmp}",
             f"--pid-file={self.run_dir / 'mysqld.pid'}", "--general-log=1", f"--general-log-file={self.general_log}",
             "--slow-query-log=1", f"--slow-query-log-file={self.run_dir / 'slow.log'}", "--long-query-time=0",
             "--innodb-buffer-pool-size=32M", "--skip-log-bin", "--max-connections=500", *self._tls_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, self.log)

    def admin(self) -> pymysql.connections.Connection:
        """An autocommit connection as the admin over TCP."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user=self.admin_user, password=self.admin_password,
                               autocommit=True, connect_timeout=10)

    def create_user(self, name: str, password: str, hosts: tuple[str, ...] = ("%",), *, grant: str = "") -> None:
        """CREATE USER name@host for every host with password (dropped first), optionally with a GRANT."""
        conn = self.admin()
        with conn.cursor() as cur:
            for host in hosts:
                cur.execute("DROP USER IF EXISTS %s@%s", (name, host))
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (name, host, password))
                if grant:
                    cur.execute(f"GRANT {grant} TO %s@%s", (name, host))
        conn.close()

    def auth_strings(self, name: str) -> dict[str, str]:
        """host -> the stored password hash of every entry of user name."""
        conn = self.admin()
        with conn.cursor() as cur:
            cur.execute("SELECT Host, authentication_string FROM mysql.user WHERE User = %s", (name,))
            rows = {str(h): str(a) for h, a in cur.fetchall()}
        conn.close()
        return rows

    def can_login(self, user: str, password: str) -> bool:
        """Whether user logs in over TCP with password."""
        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, connect_timeout=10).close()
            return True
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == 1045:
                return False
            raise

    def log_marks(self) -> dict[Path, int]:
        """Where the general, slow and error logs end now (for log_since)."""
        return {p: (p.stat().st_size if p.exists() else 0) for p in (self.general_log, self.run_dir / "slow.log", self.log)}

    def log_since(self, marks: dict[Path, int]) -> str:
        """What the general, slow and error logs gained since marks."""
        return "\n".join(p.read_bytes()[at:].decode(errors="replace") if p.exists() else "" for p, at in marks.items())

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


# -- Redis -------------------------------------------------------------------------------------------------
class RedisServer(_ChildServer):
    """A private redis-server on a free port with an ACL file; `default` needs a password."""

    def __init__(self, *, cert_names: tuple[str, ...] = ()) -> None:
        self.exe = shutil.which("redis-server")
        if not self.exe:
            raise ServerUnavailable("redis-server is missing (install redis-server)")
        self.base = _base_dir("redis")
        self.aclfile = self.base / "users.acl"
        self.log = self.base / "redis.log"
        self.port = free_port()
        self.admin_user = "keyturn_admin"
        self.admin_password = "adm-" + secrets.token_urlsafe(18)
        self.default_password = "def-" + secrets.token_urlsafe(18)
        self.aclfile.write_text(
            f"user default on #{_sha(self.default_password)} ~* &* +@all\n"
            f"user {self.admin_user} on #{_sha(self.admin_password)} ~* &* +@all\n")
        self.proc: subprocess.Popen | None = None
        # With cert_names: TLS only on the port, with a certificate for those DNS names (its CA in .ca_file).
        self.ca_file = ""
        self._listen = ["--port", str(self.port)]
        if cert_names:
            self.ca_file = str(self.base / "ca.pem")
            cert, key = self.base / "server.crt", self.base / "server.key"
            _self_signed(Path(self.ca_file), cert, key, pwd.getpwuid(os.getuid()).pw_name, cert_names)
            self._listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                            "--tls-key-file", str(key), "--tls-ca-cert-file", self.ca_file, "--tls-auth-clients", "no"]
        self.start()

    def _tls(self) -> dict:
        return {"ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": False} if self.ca_file else {}

    def start(self) -> None:
        """Start (or restart after stop) the server; the ACL file keeps users across restarts."""
        self.proc = subprocess.Popen(
            [self.exe, *self._listen, "--bind", "127.0.0.1", "--aclfile", str(self.aclfile),
             "--dir", str(self.base), "--save", "", "--appendonly", "no", "--logfile", str(self.log),
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, self.log)

    def admin(self) -> redis_lib.Redis:
        """A client authenticated as the admin."""
        return redis_lib.Redis(host="127.0.0.1", port=self.port, username=self.admin_user,
                               password=self.admin_password, socket_timeout=10, **self._tls())

    def create_user(self, name: str, password: str, rules: str = "~app:* +@read +@write") -> None:
        """ACL SETUSER name reset on >password rules."""
        client = self.admin()
        client.execute_command("ACL", "SETUSER", name, "reset", "on", f"#{_sha(password)}", *rules.split())
        client.execute_command("ACL", "SAVE")
        client.close()

    def can_login(self, user: str, password: str) -> bool:
        """Whether AUTH user password succeeds."""
        client = redis_lib.Redis(host="127.0.0.1", port=self.port, username=user, password=password, socket_timeout=10,
                                 **self._tls())
        try:
            client.ping()
            return True
        except redis_lib.AuthenticationError:
            return False
        except redis_lib.exceptions.NoPermissionError:
            return True  # AUTH passed on connect; the user may not PING
        finally:
            client.close()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def _sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()
