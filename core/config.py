"""The one typed settings object: TOML file, then KEYTURN_* environment overrides."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from core.errors import ConfigError


# Defaults of the long-running commands, here (not in core.scheduler / core.workers) so that the command line
# can show them in its help without loading the engine.
DEFAULT_WORKERS = 4  # `keyturn scheduler`: tasks run at once at most
DEFAULT_LEASE_SECONDS = 60.0  # `keyturn worker`: how long a unit stays a worker's without a renewal
DEFAULT_POLL_SECONDS = 2.0  # `keyturn worker`: seconds between looks for queued units when idle
# Slack on each side of a push's host-enforced deadline (core.drivers.base.change_budget): the host stops a change
# a margin before the deadline its record stores, so a reconcile after that deadline never races a late push.
# The margin covers the latency until the remote command starts; a whole second is the least that means anything
# (the host's `timeout` counts whole seconds).
DEFAULT_DEADLINE_MARGIN = 5.0
MIN_DEADLINE_MARGIN = 1.0


def default_home(env: Mapping[str, str]) -> Path:
    """Data directory: KEYTURN_HOME, else $XDG_DATA_HOME/keyturn, else ~/.local/share/keyturn."""
    if env.get("KEYTURN_HOME"):
        return Path(env["KEYTURN_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "keyturn"


def default_config_path(env: Mapping[str, str]) -> Path:
    """Config file: KEYTURN_CONFIG, else $XDG_CONFIG_HOME/keyturn/config.toml."""
    if env.get("KEYTURN_CONFIG"):
        return Path(env["KEYTURN_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "keyturn" / "config.toml"


@dataclass
class Settings:
    """Every setting keyturn reads. TOML `[smtp] host = ...` and env `KEYTURN_SMTP_HOST` both set smtp_host."""

    home: Path = field(default_factory=lambda: default_home(os.environ))
    database_url: str = ""  # default: SQLite file keyturn.db in home
    secure_mode: bool = True  # privileged and login accounts are not changed
    concurrency: int = 32  # assets worked on at once
    connect_timeout: float = 10.0
    auth_timeout: float = 15.0
    command_timeout: float = 60.0
    deadline_margin: float = DEFAULT_DEADLINE_MARGIN  # seconds each side of a push's deadline (at least 1); the
    # record's deadline is command_timeout + 2 margins after the push starts, and reconcile waits for it
    reconcile_on_start: bool = True
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_user: str = ""  # AUTH is only ever sent over TLS (smtp_starttls or smtp_ssl)
    smtp_ca_file: str = ""  # CA bundle for the SMTP server's certificate (default: the system's)
    smtp_from: str = "keyturn@localhost"
    smtp_timeout: float = 20.0
    mfa_unlock_seconds: int = 300
    mfa_max_failures: int = 5
    mfa_lockout_seconds: int = 900
    reveal_hide_seconds: int = 30
    scheduler_poll_seconds: float = 30.0
    audit_syslog: str = ""  # syslog socket (e.g. /dev/log, read by journald) each audit event is forwarded to
    allowed_programs: str = ""  # comma-separated programs a task may name beyond the built-in lists: chpasswd, shells, sudo commands (with their arguments)
    config_path: Path | None = None

    @property
    def db_path(self) -> Path:
        """The SQLite file used when no database_url is configured."""
        return self.home / "keyturn.db"

    @property
    def effective_database_url(self) -> str:
        """database_url, or SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.db_path}"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Settings that decide who may see or redirect a secret: under sudo they come only from the protected file.
SECURITY_SETTINGS = frozenset({
    "secure_mode", "mfa_unlock_seconds", "mfa_max_failures", "mfa_lockout_seconds", "database_url",
    "smtp_host", "smtp_port", "smtp_starttls", "smtp_ssl", "smtp_user", "smtp_ca_file", "allowed_programs", "audit_syslog",
    "home",
})
# What the root-owned sudo wrapper itself sets (README): the only KEYTURN_* variables accepted under sudo.
WRAPPER_VARIABLES = frozenset({"KEYTURN_HOME", "KEYTURN_CONFIG"})


@dataclass(frozen=True)
class ProcessIdentity:
    """Who runs this process: real and effective uid, and the person sudo says invoked it."""

    real_uid: int
    effective_uid: int
    sudo_user: str = ""
    sudo_uid: str = ""

    @classmethod
    def current(cls, env: Mapping[str, str]) -> "ProcessIdentity":
        """This process's identity (SUDO_USER/SUDO_UID from env)."""
        real = os.getuid() if hasattr(os, "getuid") else 0
        effective = os.geteuid() if hasattr(os, "geteuid") else 0
        return cls(real, effective, env.get("SUDO_USER", ""), env.get("SUDO_UID", ""))

    @property
    def elevated(self) -> bool:
        """Running with rights the invoking person does not have: through sudo, or setuid."""
        return self.real_uid != self.effective_uid or bool(self.sudo_user or self.sudo_uid)


def _coerce(name: str, kind: Any, value: Any, where: str, *, echo: bool = True) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if "bool" in kind_name:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true or false")
        if "int" in kind_name and "Path" not in kind_name:
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            return int(value)
        if "float" in kind_name:
            return float(value)
        if "Path" in kind_name:
            return Path(str(value)).expanduser()
        return str(value)
    except ValueError as exc:
        # A value from a file is never repeated: the file may not be the one the person can read.
        shown = f" = {value!r}" if echo else ""
        reason = str(exc) if echo else _expected(kind_name)
        raise ConfigError(f"{where}: {name}{shown}: {reason}") from None


def _expected(kind_name: str) -> str:
    if "bool" in kind_name:
        return "expected true or false"
    if "int" in kind_name:
        return "expected a whole number"
    if "float" in kind_name:
        return "expected a number"
    return "invalid value"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out


def _check_protected(path: Path, identity: ProcessIdentity) -> None:
    """The config file must be owned by root or the service user and writable by its owner only."""
    st = path.stat()
    if st.st_uid not in (0, identity.effective_uid):
        raise ConfigError(f"{path}: owned by uid {st.st_uid}, not by root or the user keyturn runs as; "
                          "keyturn takes its settings only from a file that only they can change")
    if st.st_mode & 0o022:
        raise ConfigError(f"{path}: group or others may write it (mode {st.st_mode & 0o777:o}); run: chmod 644 {path}")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib names the line and column and what it expected, never the text it read.
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_settings(env: Mapping[str, str] | None = None, config_path: Path | None = None, *,
                  identity: ProcessIdentity | None = None) -> Settings:
    """Read the config file (if any) and KEYTURN_* overrides; raise ConfigError naming the bad key.

    config_path is the command line's --config. Through sudo (or whenever the real and effective users
    differ) --config and every KEYTURN_* variable except those the wrapper sets are refused: the service's
    settings, security settings above all, come only from its protected config file.
    """
    env = os.environ if env is None else env
    identity = identity or ProcessIdentity.current(env)
    if identity.elevated:
        if config_path is not None:
            raise ConfigError("--config is refused when keyturn runs through sudo: the service's settings come "
                              "only from its protected config file (KEYTURN_CONFIG set by the wrapper)")
        refused = sorted(k for k in env if k.startswith("KEYTURN_") and k not in WRAPPER_VARIABLES)
        if refused:
            raise ConfigError(f"{', '.join(refused)}: refused when keyturn runs through sudo; settings come only "
                              "from the protected config file, and the acting person is the one sudo names")
    path = config_path or default_config_path(env)
    kinds = {f.name: f.type for f in fields(Settings) if f.name != "config_path"}
    values: dict[str, Any] = {"home": default_home(env)}
    if path.exists():
        _check_protected(path, identity)
        for name, value in _flatten(_read_file(path)).items():
            if name not in kinds:
                raise ConfigError(f"{path}: unknown setting {name!r}")
            values[name] = _coerce(name, kinds[name], value, str(path), echo=False)
    for key, value in env.items():
        if not key.startswith("KEYTURN_") or key in {"KEYTURN_CONFIG", "KEYTURN_OPERATOR"}:
            continue
        name = key[len("KEYTURN_"):].lower()
        if name in kinds:
            values[name] = _coerce(name, kinds[name], value, f"environment {key}")
    settings = Settings(**values, config_path=path)
    if settings.concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {settings.concurrency}")
    if not settings.deadline_margin >= MIN_DEADLINE_MARGIN:  # also refuses nan
        raise ConfigError(f"deadline_margin must be at least {MIN_DEADLINE_MARGIN:g} second(s), "
                          f"got {settings.deadline_margin:g}")
    return settings
