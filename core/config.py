"""The one typed settings object: TOML file, then KEYTURN_* environment overrides."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from core.errors import ConfigError


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
    allowed_programs: str = ""  # comma-separated absolute paths a task may name besides chpasswd (root runs them)
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


def _coerce(name: str, kind: Any, value: Any, where: str) -> Any:
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
        raise ConfigError(f"{where}: {name} = {value!r}: {exc}") from None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out


def load_settings(env: Mapping[str, str] | None = None, config_path: Path | None = None) -> Settings:
    """Read the config file (if any) and KEYTURN_* overrides; raise ConfigError naming the bad key."""
    env = os.environ if env is None else env
    path = config_path or default_config_path(env)
    kinds = {f.name: f.type for f in fields(Settings) if f.name != "config_path"}
    values: dict[str, Any] = {"home": default_home(env)}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for name, value in _flatten(data).items():
            if name not in kinds:
                raise ConfigError(f"{path}: unknown setting {name!r}")
            values[name] = _coerce(name, kinds[name], value, str(path))
    for key, value in env.items():
        if not key.startswith("KEYTURN_") or key in {"KEYTURN_CONFIG", "KEYTURN_OPERATOR"}:
            continue
        name = key[len("KEYTURN_"):].lower()
        if name in kinds:
            values[name] = _coerce(name, kinds[name], value, f"environment {key}")
    settings = Settings(**values, config_path=path)
    if settings.concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {settings.concurrency}")
    return settings
