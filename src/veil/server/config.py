"""The server's settings: :class:`ServerConfig` and :func:`load_config`.

Settings come from, lowest to highest precedence: the defaults, an optional TOML file
(``--config PATH`` or ``$VEIL_CONFIG``; its keys are the field names), the environment
(``VEIL_HOST``, ``VEIL_PORT``, ``VEIL_DATA_DIR``, ``VEIL_DATABASE_URL``, ``VEIL_NATS_URL``,
``VEIL_LOG_LEVEL``; an empty variable counts as unset) and the command-line flags.

``database_url`` ``None`` means SQLite at ``<data_dir>/veil.db``; otherwise it is
``postgresql://...`` / ``postgres://...`` (PostgreSQL) or ``sqlite:///absolute/path.db``.

Rate limits (:class:`veil.server.app.Limits`, see :mod:`veil.server.throttle`): in TOML a
``[rate_limits]`` table of ``name = [per_second, burst]``, in the environment
``VEIL_RATE_LIMITS="per_ip=100/500, per_account=50/500"``; limits not named keep their
defaults. ``trusted_proxies`` (TOML array, or ``VEIL_TRUSTED_PROXIES`` separated by commas)
are the addresses or networks whose ``X-Forwarded-For`` header names the client.
``max_attachment_bytes`` (default 100 MiB) and ``attachment_ttl_s`` (default 30 days) bound
attachments (set them in the TOML file). ``queue_retention_days`` (default 30; TOML,
``VEIL_QUEUE_RETENTION_DAYS`` or ``--queue-retention-days``): envelopes not delivered within
that many days are deleted. Calls: ``turn_urls`` (TOML array or ``VEIL_TURN_URLS`` separated by
commas: ``turn:host:3478?transport=udp``, ``turns:...``, ``stun:...``), ``turn_secret`` (the
relay's ``static-auth-secret``; ``VEIL_TURN_SECRET``; required with a ``turn:`` URL) and
``turn_ttl_s`` (how long a credential works, default 3600).
Invalid values raise :class:`ConfigError` with a message that names the setting and where it
came from. The ``repr`` of a config never shows a password (nor a NATS token).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from veil.server.ratelimit import SCOPES, Rate, check_rate

LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug", "trace")
POSTGRES_SCHEMES: Final = ("postgresql", "postgres")
NATS_SCHEMES: Final = ("nats", "tls", "ws", "wss")

ENV_VARS: Final = {
    "host": "VEIL_HOST",
    "port": "VEIL_PORT",
    "data_dir": "VEIL_DATA_DIR",
    "database_url": "VEIL_DATABASE_URL",
    "nats_url": "VEIL_NATS_URL",
    "log_level": "VEIL_LOG_LEVEL",
    "trusted_proxies": "VEIL_TRUSTED_PROXIES",
    "rate_limits": "VEIL_RATE_LIMITS",
    "queue_retention_days": "VEIL_QUEUE_RETENTION_DAYS",
    "turn_urls": "VEIL_TURN_URLS",
    "turn_secret": "VEIL_TURN_SECRET",
    "turn_ttl_s": "VEIL_TURN_TTL_S",
}
CONFIG_ENV: Final = "VEIL_CONFIG"
SQLITE_FILE: Final = "veil.db"


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message says which and why."""


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$VEIL_DATA_DIR``, else ``${XDG_DATA_HOME:-~/.local/share}/veil``."""
    env = os.environ if env is None else env
    if env.get("VEIL_DATA_DIR"):
        return Path(env["VEIL_DATA_DIR"]).expanduser().absolute()
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "veil"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "veil"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``veil server`` needs to start."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    nats_url: str | None = None
    log_level: str = "info"
    trusted_proxies: tuple[str, ...] = ()
    rate_limits: Mapping[str, Rate] = field(default_factory=dict, hash=False)
    """Limits that differ from the defaults, by name (a field of ``Limits``)."""
    max_attachment_bytes: int = 100 << 20
    """Largest attachment upload (bigger ones are refused with 413)."""
    attachment_ttl_s: int = 30 * 24 * 3600
    """How long an attachment is served after its upload."""
    queue_retention_days: int = 30
    """Envelopes not delivered (acknowledged) within this many days are deleted."""
    turn_urls: tuple[str, ...] = ()
    """The TURN/STUN servers calls use (none: host candidates only)."""
    turn_secret: str = field(default="", repr=False)
    """Shared with the TURN relay (coturn ``static-auth-secret``); never logged."""
    turn_ttl_s: int = 3600
    """How long an issued TURN credential works."""

    def __post_init__(self) -> None:
        _validate(self)

    def __repr__(self) -> str:
        return (
            f"ServerConfig(host={self.host!r}, port={self.port!r}, "
            f"data_dir={str(self.data_dir)!r}, database_url={_opt(redact_url(self.database_url))}, "
            f"nats_url={_opt(redact_url(self.nats_url))}, log_level={self.log_level!r}, "
            f"trusted_proxies={self.trusted_proxies!r}, rate_limits={dict(self.rate_limits)!r})"
        )

    @property
    def is_postgres(self) -> bool:
        """True when the data lives in PostgreSQL."""
        return self.database_url is not None and _scheme(self.database_url) in POSTGRES_SCHEMES

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or ``None`` in PostgreSQL mode."""
        if self.database_url is None:
            return self.data_dir / SQLITE_FILE
        if _scheme(self.database_url) == "sqlite":
            return Path(unquote(urlsplit(self.database_url).path))
        return None

    def storage_description(self) -> str:
        """Where the data lives, without any password: for the start-up line."""
        path = self.sqlite_path
        if path is not None:
            return f"SQLite database at {path} (WAL)"
        assert self.database_url is not None
        parts = urlsplit(self.database_url)
        host = parts.hostname or "localhost (default socket)"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        database = unquote(parts.path.lstrip("/")) or "(default database)"
        user = f"{unquote(parts.username)}@" if parts.username else ""
        return f"PostgreSQL at {user}{host}/{database}"


def _opt(value: str | None) -> str:
    return "None" if value is None else repr(value)


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def redact_url(url: str | None) -> str | None:
    """``url`` with its password (and a ``password=`` query value) replaced by ``***``.

    A NATS URL with a user but no password carries a token in the user position, so that
    is hidden too.
    """
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            if has_password:
                userinfo = f"{user}:***"
            elif parts.scheme.lower() in NATS_SCHEMES:
                userinfo = "***"
            netloc = f"{userinfo}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(key.lower() in ("password", "token") for key, _ in pairs):
                query = urlencode(
                    [(k, "***" if k.lower() in ("password", "token") else v) for k, v in pairs],
                    safe="*",
                )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable URL hidden>"


def _validate(config: ServerConfig) -> None:
    if not isinstance(config.host, str) or not config.host:
        raise ConfigError("host must be a non-empty string")
    if isinstance(config.port, bool) or not isinstance(config.port, int):
        raise ConfigError(f"port must be an integer, not {config.port!r}")
    if not 1 <= config.port <= 65535:
        raise ConfigError(f"port must be 1..65535, not {config.port}")
    if not isinstance(config.data_dir, Path):
        raise ConfigError("data_dir must be a path")
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"log_level must be one of {', '.join(LOG_LEVELS)}, not {config.log_level!r}"
        )
    if config.database_url is not None:
        _validate_database_url(config.database_url)
    if config.nats_url is not None:
        _validate_nats_url(config.nats_url)
    _validate_proxies(config.trusted_proxies)
    _validate_turn(config)
    for name in ("max_attachment_bytes", "attachment_ttl_s", "queue_retention_days", "turn_ttl_s"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    _validate_rate_limits(config.rate_limits)


def _validate_turn(config: ServerConfig) -> None:
    urls = config.turn_urls
    if not isinstance(urls, tuple) or not all(isinstance(u, str) for u in urls):
        raise ConfigError("turn_urls must be a list of turn:, turns: or stun: URLs")
    for url in urls:
        scheme, _, rest = url.partition(":")
        if scheme not in ("turn", "turns", "stun", "stuns") or not rest or " " in url:
            raise ConfigError(
                f"turn_urls: {url!r} is not a turn:, turns: or stun: URL"
                " (e.g. turn:relay.example:3478?transport=udp)"
            )
    relays = any(u.startswith(("turn:", "turns:")) for u in urls)
    if not isinstance(config.turn_secret, str):
        raise ConfigError("turn_secret must be a string")
    if relays and len(config.turn_secret) < 16:
        raise ConfigError(
            "turn_secret (the relay's static-auth-secret, at least 16 characters) is required"
            " with a turn: URL"
        )


def _validate_proxies(proxies: object) -> None:
    if not isinstance(proxies, tuple) or not all(isinstance(p, str) for p in proxies):
        raise ConfigError("trusted_proxies must be a list of IP addresses or networks")
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"trusted_proxies: {proxy!r} is not an IP address or network (10.0.0.0/8)"
            ) from None


def _validate_rate_limits(limits: object) -> None:
    if not isinstance(limits, Mapping):
        raise ConfigError("rate_limits must be a table of name = [per_second, burst]")
    for name, rate in limits.items():
        if name not in SCOPES:
            raise ConfigError(f"rate_limits: unknown limit {name!r} (known: {', '.join(SCOPES)})")
        try:
            check_rate(f"rate_limits.{name}", rate)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _validate_database_url(url: str) -> None:
    scheme = _scheme(url)
    shown = redact_url(url)
    if scheme in POSTGRES_SCHEMES:
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError as exc:
            raise ConfigError(f"database_url {shown!r} is not a valid URL: {exc}") from None
        return
    if scheme == "sqlite":
        parts = urlsplit(url)
        if parts.netloc or not parts.path.startswith("/") or parts.path in ("", "/"):
            raise ConfigError(
                f"database_url {shown!r}: a SQLite URL is sqlite:///absolute/path/veil.db"
            )
        return
    raise ConfigError(
        f"database_url {shown!r} must start with postgresql://, postgres:// or sqlite:///"
        " (leave it unset for SQLite in the data folder)"
    )


def _validate_nats_url(url: str) -> None:
    if _scheme(url) not in NATS_SCHEMES:
        raise ConfigError(
            f"nats_url {redact_url(url)!r} must start with "
            + ", ".join(f"{s}://" for s in NATS_SCHEMES)
        )


_TYPES: Final[dict[str, type]] = {
    "host": str,
    "port": int,
    "data_dir": str,
    "database_url": str,
    "nats_url": str,
    "log_level": str,
    "trusted_proxies": list,
    "rate_limits": dict,
    "max_attachment_bytes": int,
    "attachment_ttl_s": int,
    "queue_retention_days": int,
    "turn_urls": list,
    "turn_secret": str,
    "turn_ttl_s": int,
}
_KINDS: Final[dict[type, str]] = {
    int: "an integer",
    str: "a string",
    list: "an array of strings",
    dict: "a table of name = [per_second, burst]",
}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML file, type-checked; a relative ``data_dir`` is taken relative
    to the file's folder."""
    path = Path(path).expanduser()
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}"
            f" (known: {', '.join(_TYPES)})"
        )
    for key, value in data.items():
        kind = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"config file {path}: {key} must be {_KINDS[kind]}, not {value!r}")
    if "data_dir" in data:
        data_dir = Path(data["data_dir"]).expanduser()
        data["data_dir"] = data_dir if data_dir.is_absolute() else path.parent / data_dir
    for key in ("trusted_proxies", "turn_urls"):
        if key in data:
            data[key] = tuple(data[key])
    if "rate_limits" in data:
        data["rate_limits"] = {
            name: tuple(rate) if isinstance(rate, list) else rate
            for name, rate in data["rate_limits"].items()
        }
    return data


_SEPARATORS: Final = re.compile(r"[\s,]+")
_RATE: Final = re.compile(r"([a-z_]+)=([^/=]+)/([^/=]+)")


def _env_rate_limits(name: str, text: str) -> dict[str, Rate]:
    """``per_ip=100/500, per_account=50/500`` (commas or spaces between limits)."""
    limits: dict[str, Rate] = {}
    for item in filter(None, _SEPARATORS.split(text)):
        match = _RATE.fullmatch(item)
        try:
            if match is None:
                raise ValueError
            limits[match[1]] = (float(match[2]), float(match[3]))
        except ValueError:
            raise ConfigError(
                f"{name}: {item!r} is not name=per_second/burst (e.g. per_ip=100/500)"
            ) from None
    return limits


def read_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings given by ``VEIL_*`` variables (empty ones are ignored)."""
    values: dict[str, Any] = {}
    for key, name in ENV_VARS.items():
        text = env.get(name, "")
        if not text:
            continue
        if key in ("port", "queue_retention_days", "turn_ttl_s"):
            try:
                values[key] = int(text)
            except ValueError:
                raise ConfigError(f"{name} must be an integer, not {text!r}") from None
        elif key in ("trusted_proxies", "turn_urls"):
            values[key] = tuple(filter(None, _SEPARATORS.split(text)))
        elif key == "rate_limits":
            values[key] = _env_rate_limits(name, text)
        else:
            values[key] = text
    return values


def load_config(
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Defaults < TOML file (``config_file`` or ``$VEIL_CONFIG``) < environment < overrides.

    ``overrides`` are the command-line flags, keyed by field name; ``None`` values are
    ignored (flag not given).
    """
    env = os.environ if env is None else env
    settings: dict[str, Any] = {}
    source = config_file if config_file is not None else env.get(CONFIG_ENV) or None
    if source is not None:
        settings.update(read_config_file(source))
    settings.update(read_environment(env))
    names = {f.name for f in fields(ServerConfig)}
    for key, value in (overrides or {}).items():
        if key not in names:
            raise ConfigError(f"unknown setting {key!r}")
        if value is not None:
            settings[key] = value
    if "data_dir" in settings:
        settings["data_dir"] = Path(settings["data_dir"]).expanduser().absolute()
    else:
        settings["data_dir"] = default_data_dir(env)
    return ServerConfig(**settings)
