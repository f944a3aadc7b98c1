"""``veil server``: settings (precedence, validation, redaction) and the real process.

The process tests start ``veil server`` / ``veil server migrate`` as subprocesses, on SQLite in
a temporary folder and on PostgreSQL in a fresh database (skipped without PostgreSQL unless
``VEIL_REQUIRE_POSTGRES=1``, as in ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from veil.server.config import ConfigError, ServerConfig, load_config, redact_url
from veil.server.main import uses_nats, warnings_for

from .conftest import _drop_postgres_database, _fresh_postgres_database

CLEAN_ENV = {"HOME": "/home/someone"}


# --- settings ---------------------------------------------------------------------------------
def test_defaults() -> None:
    config = load_config(env=CLEAN_ENV)
    assert config == ServerConfig(data_dir=Path("/home/someone/.local/share/veil"))
    assert (config.host, config.port, config.log_level) == ("127.0.0.1", 8080, "info")
    assert config.database_url is None
    assert config.nats_url is None
    assert config.sqlite_path == Path("/home/someone/.local/share/veil/veil.db")
    assert config.storage_description() == (
        "SQLite database at /home/someone/.local/share/veil/veil.db (WAL)"
    )


def test_default_data_dir_follows_xdg_and_veil_data_dir(tmp_path: Path) -> None:
    xdg = load_config(env={**CLEAN_ENV, "XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert xdg.data_dir == tmp_path / "xdg" / "veil"
    own = load_config(env={"XDG_DATA_HOME": "/x", "VEIL_DATA_DIR": str(tmp_path / "d")})
    assert own.data_dir == tmp_path / "d"


def test_precedence_defaults_file_env_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VEIL_HOST", "VEIL_PORT", "VEIL_DATA_DIR", "VEIL_DATABASE_URL", "VEIL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VEIL_LOG_LEVEL", "")  # empty counts as unset
    file = tmp_path / "veil.toml"
    file.write_text(
        'host = "0.0.0.0"\nport = 9000\ndata_dir = "rel"\nlog_level = "warning"\n'
        'nats_url = "nats://127.0.0.1:4222"\n'
    )
    monkeypatch.setenv("VEIL_CONFIG", str(file))

    from_file = load_config()
    assert (from_file.host, from_file.port, from_file.log_level) == ("0.0.0.0", 9000, "warning")
    assert from_file.data_dir == tmp_path / "rel"  # relative to the file's folder
    assert from_file.nats_url == "nats://127.0.0.1:4222"

    monkeypatch.setenv("VEIL_PORT", "9100")
    monkeypatch.setenv("VEIL_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("VEIL_DATABASE_URL", "postgresql://veil@db.example/veil")
    from_env = load_config()
    assert (from_env.host, from_env.port) == ("0.0.0.0", 9100)  # host still from the file
    assert from_env.data_dir == tmp_path / "env"
    assert from_env.is_postgres
    assert from_env.sqlite_path is None
    assert from_env.storage_description() == "PostgreSQL at veil@db.example/veil"

    flags = {"port": 9200, "host": None, "database_url": None, "data_dir": str(tmp_path / "f")}
    from_flags = load_config(overrides=flags)
    assert (from_flags.host, from_flags.port) == ("0.0.0.0", 9200)  # None = flag not given
    assert from_flags.data_dir == tmp_path / "f"
    assert from_flags.database_url == "postgresql://veil@db.example/veil"

    other = tmp_path / "other.toml"
    other.write_text("port = 7000\n")
    assert load_config(config_file=other).port == 9100  # --config replaces $VEIL_CONFIG
    monkeypatch.delenv("VEIL_PORT")
    assert load_config(config_file=other).host == "127.0.0.1"
    assert load_config(config_file=other).port == 7000


def test_sqlite_url() -> None:
    config = load_config(env=CLEAN_ENV, overrides={"database_url": "sqlite:///srv/veil/x.db"})
    assert config.sqlite_path == Path("/srv/veil/x.db")
    assert not config.is_postgres


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        ({"port": 0}, {}, "port must be 1..65535, not 0"),
        ({"port": 70000}, {}, "port must be 1..65535"),
        ({}, {"VEIL_PORT": "http"}, "VEIL_PORT must be an integer, not 'http'"),
        ({"log_level": "loud"}, {}, "log_level must be one of"),
        ({"database_url": "mysql://u:pw@h/db"}, {}, "must start with postgresql://"),
        ({"database_url": "/var/lib/veil.db"}, {}, "must start with postgresql://"),
        ({"database_url": "sqlite://relative.db"}, {}, "sqlite:///absolute/path"),
        ({"database_url": "postgresql://h:notaport/db"}, {}, "not a valid URL"),
        ({"nats_url": "http://h:4222"}, {}, "nats_url 'http://h:4222' must start with nats://"),
        ({"host": ""}, {}, "host must be a non-empty string"),
    ],
)
def test_invalid_values(overrides: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(env={**CLEAN_ENV, **env}, overrides=overrides)


def test_invalid_file(tmp_path: Path) -> None:
    file = tmp_path / "veil.toml"
    file.write_text('port = 1\ndatabase = "x"\nlistn = 2\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) database, listn \(known: host"):
        load_config(config_file=file, env=CLEAN_ENV)
    file.write_text('port = "8080"\n')
    with pytest.raises(ConfigError, match="port must be an integer, not '8080'"):
        load_config(config_file=file, env=CLEAN_ENV)
    file.write_text("port = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(config_file=file, env=CLEAN_ENV)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "missing.toml", env=CLEAN_ENV)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(env={**CLEAN_ENV, "VEIL_CONFIG": str(tmp_path / "missing.toml")})


def test_repr_hides_passwords() -> None:
    config = load_config(
        env=CLEAN_ENV,
        overrides={
            "database_url": "postgresql://veil:s3cret-pw@db:5432/veil?sslmode=require",
            "nats_url": "nats://tok3n-value@nats:4222",
        },
    )
    text = repr(config)
    assert "s3cret-pw" not in text
    assert "tok3n-value" not in text
    assert "postgresql://veil:***@db:5432/veil?sslmode=require" in text
    assert "nats://***@nats:4222" in text
    assert "s3cret-pw" not in config.storage_description()
    assert config.storage_description() == "PostgreSQL at veil@db:5432/veil"
    query = redact_url("postgres://db/veil?user=v&password=hunter2")
    assert query is not None
    assert "hunter2" not in query
    assert "password=***" in query
    assert "s3cret" not in str(config_error("postgresql://u:s3cret@h:bad/db"))


def config_error(url: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(env=CLEAN_ENV, overrides={"database_url": url})
    return info.value


# --- the process ------------------------------------------------------------------------------
def veil_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    return {**env, **extra}


def run_veil(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veil", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=veil_env() if env is None else dict(env),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_help() -> None:
    result = run_veil("--help")
    assert result.returncode == 0
    assert "server" in result.stdout
    result = run_veil("server", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--host", "--port", "--data-dir", "--database-url", "--config", "migrate"):
        assert flag in result.stdout
    result = run_veil("server", "migrate", "--help")
    assert result.returncode == 0, result.stderr
    assert "--data-dir" in result.stdout and "--data DIR" in result.stdout  # --data: alias


def test_bad_setting_exits_2() -> None:
    result = run_veil("server", "--port", "99999")
    assert result.returncode == 2
    assert "veil server: port must be 1..65535, not 99999" in result.stderr
    result = run_veil("server", "migrate", "--database-url", "mysql://u:hunter2@h/db")
    assert result.returncode == 2
    assert "must start with postgresql://" in result.stderr
    assert "hunter2" not in result.stderr


def test_migrate_creates_sqlite_database(tmp_path: Path) -> None:
    data = tmp_path / "data" / "veil"
    result = run_veil("server", "migrate", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert f"SQLite database at {data / 'veil.db'} (WAL)" in result.stdout
    assert "schema version " in result.stdout
    version = int(result.stdout.rsplit("schema version ", 1)[1].split()[0])
    assert version >= 1
    assert (data / "veil.db").is_file()
    assert data.stat().st_mode & 0o777 == 0o700
    again = run_veil("server", "--data-dir", str(data), "migrate")  # flag before the action
    assert again.returncode == 0, again.stderr
    assert f"schema version {version}" in again.stdout


@pytest.fixture
def postgres_url() -> Iterator[str]:
    dsn, name = asyncio.run(_fresh_postgres_database())
    try:
        yield dsn
    finally:
        asyncio.run(_drop_postgres_database(name))


@pytest.mark.postgres
def test_migrate_postgres(postgres_url: str) -> None:
    result = run_veil("server", "migrate", "--database-url", postgres_url)
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL at " in result.stdout
    assert "schema version " in result.stdout


def serve_and_stop(args: list[str], env: Mapping[str, str] | None = None) -> str:
    """Start ``veil server ARGS``, check /v1/health, SIGTERM it; return its output."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "veil", "server", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=veil_env() if env is None else dict(env),
    )
    try:
        deadline = time.monotonic() + 15
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert proc.poll() is None, f"server exited early:\n{proc.communicate()[0]}"
        assert answer is not None, "no answer on /v1/health within 15 s"
        assert answer.status_code == 200
        assert answer.json() == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, output
        return output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_server_sqlite(tmp_path: Path) -> None:
    output = serve_and_stop(["--data-dir", str(tmp_path / "d")])
    assert f"Veil server: SQLite database at {tmp_path / 'd' / 'veil.db'} (WAL)" in output
    assert "Veil server: listening on http://127.0.0.1:" in output
    assert (tmp_path / "d" / "veil.db").is_file()


@pytest.mark.postgres
def test_server_postgres(postgres_url: str, tmp_path: Path) -> None:
    env = veil_env(VEIL_DATABASE_URL=postgres_url)
    output = serve_and_stop(["--data-dir", str(tmp_path / "unused")], env=env)
    assert "Veil server: PostgreSQL at " in output
    password = urlsplit(postgres_url).password
    assert password is None or password not in output
    assert not (tmp_path / "unused").exists()


def test_help_does_not_import_the_server() -> None:
    code = (
        "import sys; from veil.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith(('veil.server', 'uvicorn'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_nats_url_with_sqlite_draws_a_warning() -> None:
    config = load_config(env={**CLEAN_ENV, "VEIL_NATS_URL": "nats://127.0.0.1:4222"})
    assert warnings_for(config) == [
        "nats_url is ignored with SQLite: several server processes need a shared PostgreSQL"
        " database (database_url)"
    ]
    assert not uses_nats(config)
    assert warnings_for(load_config(env=CLEAN_ENV)) == []
    postgres = load_config(
        env={**CLEAN_ENV, "VEIL_NATS_URL": "nats://127.0.0.1:4222"},
        overrides={"database_url": "postgresql://veil@db/veil"},
    )
    assert warnings_for(postgres) == []
    assert uses_nats(postgres)
