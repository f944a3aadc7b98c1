"""Starting the server: open the configured repository, migrate, serve with uvicorn.

:func:`run` is ``veil server``; :func:`migrate` is ``veil server migrate``. Both first print
where the data lives (never a password). The repository is opened inside the event loop that
serves the app, because an asyncpg pool belongs to the loop that created it.

Several processes can serve one PostgreSQL database: with ``nats_url`` set, each connects to
NATS (:class:`~veil.server.fanout.NatsFanout`, ARCHITECTURE.md section 4) so that a send through
one process wakes the device connected to another. With SQLite, ``nats_url`` is ignored (one
process owns the file) and draws a warning.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sqlite3
import sys
from collections.abc import Callable
from types import FrameType
from typing import Final, Literal, TextIO

import asyncpg
import uvicorn

from veil.server.app import Limits, create_app
from veil.server.attachments import AttachmentSettings
from veil.server.blobs import BlobStore, FileBlobStore
from veil.server.calls import TurnSettings
from veil.server.config import ServerConfig, redact_url
from veil.server.delivery import Notifier
from veil.server.logs import configure_logging
from veil.server.postgres_blobs import PostgresBlobStore
from veil.server.postgres_repo import PostgresRepository
from veil.server.repository import Repository
from veil.server.sqlite_repo import SqliteRepository

STARTUP_FAILURE = 3
"""Exit code when the server could not start (port taken, database unreachable, ...)."""


class StorageUnavailableError(Exception):
    """The database cannot be opened or reached; the message says which and why."""


class BrokerUnavailableError(StorageUnavailableError):
    """NATS (``nats_url``) cannot be reached at start-up."""


async def open_repository(config: ServerConfig) -> Repository:
    """The configured repository, ready to use (not migrated).

    SQLite: creates the data folder (mode 0700) if missing. PostgreSQL: connects the pool.
    """
    path = config.sqlite_path
    if path is not None:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot create the data folder {path.parent}: {exc.strerror or exc}"
            ) from None
        return SqliteRepository(path)
    assert config.database_url is not None
    try:
        return await PostgresRepository.connect(config.database_url)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageUnavailableError(
            f"cannot connect to {config.storage_description()}: {type(exc).__name__}: {exc}"
        ) from None


async def migrate(config: ServerConfig, out: TextIO | None = None) -> int:
    """Apply pending migrations; print and return the schema version."""
    out = sys.stdout if out is None else out
    print(f"Veil server: {config.storage_description()}", file=out, flush=True)
    repo = await open_repository(config)
    try:
        version = await _migrate(repo, config)
    finally:
        await repo.close()
    print(f"schema version {version}", file=out, flush=True)
    return version


async def _migrate(repo: Repository, config: ServerConfig) -> int:
    try:
        return await repo.migrate()
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailableError(
            f"cannot migrate {config.storage_description()}: {type(exc).__name__}: {exc}"
        ) from None


def _ws_implementation() -> Literal["websockets-sansio", "auto"]:
    try:
        import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401, PLC0415
    except ImportError:
        return "auto"
    return "websockets-sansio"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (what uvicorn's ``loop="auto"`` picks), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return None
    return uvloop.new_event_loop


def warnings_for(config: ServerConfig) -> list[str]:
    """Start-up warnings about settings that have no effect."""
    if config.nats_url is None or config.is_postgres:
        return []
    return [
        "nats_url is ignored with SQLite: several server processes need a shared PostgreSQL"
        " database (database_url)"
    ]


def uses_nats(config: ServerConfig) -> bool:
    """True when the server connects to NATS for wake-ups between processes."""
    return config.nats_url is not None and config.is_postgres


async def open_notifier(config: ServerConfig) -> Notifier:
    """The wake-ups: over NATS when :func:`uses_nats`, else in this process only."""
    if not uses_nats(config):
        return Notifier()
    from veil.server.fanout import NatsFanout  # noqa: PLC0415 - nats loads only when used

    assert config.nats_url is not None
    try:
        return await NatsFanout.connect(config.nats_url)
    except ConnectionError as exc:
        raise BrokerUnavailableError(
            f"cannot connect to NATS at {redact_url(config.nats_url)}: {exc}"
        ) from None


def blob_store(config: ServerConfig, repo: Repository) -> BlobStore:
    """Attachment bytes: in PostgreSQL (shared by the processes), else in
    ``<data_dir>/attachments/``."""
    if isinstance(repo, PostgresRepository):
        return PostgresBlobStore(repo.pool)
    return FileBlobStore(config.data_dir / "attachments")


GC_THRESHOLDS: Final = (20_000, 50, 100)
"""Cyclic-GC thresholds for the server process (CPython's default is (700, 10, 10)).

Each request allocates hundreds of container objects (ASGI scopes, dicts, futures, frames);
at the default a young collection ran every few requests and a full one, which walks every
live object (all connections' state), every ~100 young ones: ~12 % of py-spy samples of the
server under load. Reference counting still frees almost everything at once; only reference
cycles wait for a (now rarer) collection."""
SWITCH_INTERVAL_S: Final = 0.001
"""How long a thread waiting for the GIL lets the holder run before asking it to drop it.

The SQLite thread drops the GIL around every statement; with the event loop busy it would
wait up to CPython's default 5 ms to get it back, per statement, which capped throughput."""


def tune_runtime() -> None:
    """GC thresholds, startup objects frozen out of the GC, a shorter GIL switch interval."""
    gc.collect()
    gc.freeze()  # imported modules, config: never garbage, no need to walk them again
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def run(config: ServerConfig, out: TextIO | None = None) -> int:
    """Serve the API until SIGTERM or SIGINT; return the exit code (0 after a clean stop)."""
    out = sys.stdout if out is None else out
    print(f"Veil server: {config.storage_description()}", file=out)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"Veil server: listening on http://{host}:{config.port}", file=out, flush=True)
    for warning in warnings_for(config):
        print(f"Veil server: warning: {warning}", file=sys.stderr, flush=True)

    # uvicorn handles SIGTERM/SIGINT while it serves (graceful shutdown), then re-raises the
    # signal with the handler it found. Ours makes that re-raise a no-op, so a clean stop
    # exits 0; before uvicorn takes over, a signal stops the start-up at once.
    serving = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not serving:
            raise KeyboardInterrupt

    configure_logging(config.log_level)
    handled = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}

    async def serve() -> bool:
        nonlocal serving
        repo = await open_repository(config)
        notifier: Notifier | None = None
        try:
            notifier = await open_notifier(config)
            app = create_app(
                repo,
                notifier=notifier,
                limits=Limits(**config.rate_limits),
                trusted_proxies=config.trusted_proxies,
                blobs=blob_store(config, repo),
                attachments=AttachmentSettings(
                    config.max_attachment_bytes, config.attachment_ttl_s
                ),
                queue_retention_days=config.queue_retention_days,
                turn=TurnSettings(config.turn_urls, config.turn_secret, config.turn_ttl_s),
            )
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=config.host,
                    port=config.port,
                    log_level=config.log_level,
                    log_config=None,  # our JSON-lines logging (veil.server.logs) instead
                    access_log=False,  # the metrics middleware writes a safe access line
                    ws=_ws_implementation(),
                    # X-Forwarded-For is believed only from the configured trusted proxies
                    # (veil.server.throttle); uvicorn's own handling would trust loopback.
                    proxy_headers=False,
                    lifespan="on",
                )
            )
            serving = True
            await server.serve()
            return server.started
        finally:
            await repo.close()  # idempotent: the app's lifespan closes it on a normal stop
            if notifier is not None:
                await notifier.close()

    tune_runtime()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            started = runner.run(serve())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if started else STARTUP_FAILURE
