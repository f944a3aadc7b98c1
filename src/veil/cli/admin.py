"""``veil admin``: the operator's commands on the server's database.

* ``veil admin reports [--data DIR | --database-url URL | --config FILE] [--json]
  [--limit N]`` -- the abuse reports, newest first: id, time, reporter and reported user
  (username and account id), reason, and per revealed message its text, attachment summary
  (never a key), sender and server time, devices, and the reporting key it was verified with
  (every stored report was verified at submission; see :mod:`veil.server.reports`).
* ``veil admin rotate-reporting-key [same options]`` -- create a new reporting secret, which
  becomes current (running servers pick it up within a minute; older keys stay valid for
  reports of messages they tagged), and print its key id.

The database is found as ``veil server`` finds it (:func:`veil.server.config.load_config`:
defaults < TOML file < ``VEIL_*`` environment < flags) and migrated first, like the server
does at start-up. Exit 0 on success, 2 on a bad setting, 3 when the database cannot be
opened. Nothing secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

if TYPE_CHECKING:
    from veil.server.report_store import Report, ReportedItem, ReportStore

_T = TypeVar("_T")
DEFAULT_LIMIT = 50


def add_admin_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``veil admin`` and its actions."""
    admin = commands.add_parser(
        "admin",
        help="operator commands on the server's database (reports, reporting keys)",
        description="Operator commands on the server's database. The database is found as "
        "`veil server` finds it: --config / $VEIL_CONFIG, VEIL_DATA_DIR / VEIL_DATABASE_URL, "
        "or the flags.",
    )
    admin.set_defaults(handler=lambda args, out: _usage(admin))
    actions = admin.add_subparsers(title="actions", metavar="ACTION", dest="admin_action")
    reports = actions.add_parser(
        "reports",
        help="list the abuse reports, newest first",
        description="List the verified abuse reports, newest first, with the revealed "
        "messages (text, attachment summary, times) and the reporting key each was verified "
        "with.",
    )
    _add_database_options(reports)
    reports.add_argument("--json", action="store_true", help="print one JSON document")
    reports.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N reports (default {DEFAULT_LIMIT})",
    )
    reports.set_defaults(handler=_cmd_reports)
    rotate = actions.add_parser(
        "rotate-reporting-key",
        help="create a new reporting secret and print its key id",
        description="Create a new reporting secret (32 random bytes) that becomes current; "
        "running servers use it within a minute. Older keys are kept, so messages they "
        "tagged can still be reported. Prints the new key id.",
    )
    _add_database_options(rotate)
    rotate.set_defaults(handler=_cmd_rotate)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        "--data",
        dest="data_dir",
        metavar="DIR",
        help="the server's data folder (SQLite at DIR/veil.db)",
    )
    parser.add_argument(
        "--database-url",
        dest="database_url",
        metavar="URL",
        help="postgresql://user[:password]@host[:port]/db, or sqlite:///path/to/veil.db",
    )
    parser.add_argument("--config", metavar="FILE", help="the server's TOML settings file")


class _ExitError(Exception):
    """Stop with this exit code (the message is already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _run(args: argparse.Namespace, work: Callable[[ReportStore], Awaitable[_T]]) -> _T:
    """Open the configured database, migrate it, run ``work`` on its report store.

    :class:`_ExitError` 2 for a bad setting, 3 when the database cannot be opened.
    """
    from veil.server import main as server  # noqa: PLC0415 - the server loads only when asked
    from veil.server.config import ConfigError, load_config  # noqa: PLC0415
    from veil.server.report_store import report_store  # noqa: PLC0415

    flags = {"data_dir": args.data_dir, "database_url": args.database_url}
    try:
        config = load_config(config_file=args.config, overrides=flags)
    except ConfigError as exc:
        print(f"veil admin: {exc}", file=sys.stderr)
        raise _ExitError(2) from None
    path = config.sqlite_path
    if path is not None and not path.exists():
        print(f"veil admin: no database at {path}", file=sys.stderr)
        raise _ExitError(server.STARTUP_FAILURE)

    async def go() -> _T:
        repo = await server.open_repository(config)
        try:
            await repo.migrate()
            return await work(report_store(repo))
        finally:
            await repo.close()

    try:
        return asyncio.run(go())
    except (server.StorageUnavailableError, OSError) as exc:
        print(f"veil admin: {config.storage_description()}: {exc}", file=sys.stderr)
        raise _ExitError(server.STARTUP_FAILURE) from None


def _cmd_rotate(args: argparse.Namespace, out: TextIO) -> int:
    from veil.server.reporting import ReportingKeys  # noqa: PLC0415

    async def rotate(store: ReportStore) -> int:
        keys = ReportingKeys(store, _now_ms)
        await keys.load()  # key 1 first if there is none, so that the new one is current
        return await keys.rotate()

    try:
        key_id = _run(args, rotate)
    except _ExitError as exc:
        return exc.code
    print(f"new reporting key {key_id}", file=out)
    return 0


def _cmd_reports(args: argparse.Namespace, out: TextIO) -> int:
    limit: int = args.limit

    async def read(store: ReportStore) -> list[Report]:
        return await store.list_reports(limit)

    try:
        reports = _run(args, read)
    except _ExitError as exc:
        return exc.code
    if args.json:
        print(json.dumps({"reports": [_report_json(r) for r in reports]}, indent=2), file=out)
        return 0
    if not reports:
        print("no reports", file=out)
    for report in reports:
        _print_report(report, out)
    return 0


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _time(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms (out of range)"


def _verification(m: ReportedItem) -> str:
    return f"verified with reporting key {m.key_id}"


def _message_json(index: int, m: ReportedItem) -> dict[str, Any]:
    a = m.attachment
    return {
        "index": index,
        "message_id": m.message_id,
        "text": m.text,
        "attachment": None
        if a is None
        else {
            "file_name": a.file_name,
            "size": a.size,
            "content_type": a.content_type,
            "digest": a.digest.hex(),
        },
        "sent_ms": m.sent_ms,
        "server_ms": m.server_ms,
        "sender_device_id": m.sender_device_id,
        "recipient_device_id": m.recipient_device_id,
        "key_id": m.key_id,
        "verified": True,
        "verification": _verification(m),
    }


def _report_json(r: Report) -> dict[str, Any]:
    return {
        "report_id": r.report_id,
        "created_ms": r.created_ms,
        "created": _time(r.created_ms),
        "reporter": {
            "account_id": r.reporter_account_id,
            "username": r.reporter_username,
            "device_id": r.reporter_device_id,
        },
        "reported": {"account_id": r.reported_account_id, "username": r.reported_username},
        "reason": r.reason,
        "messages": [_message_json(i, m) for i, m in enumerate(r.messages)],
    }


def _print_report(r: Report, out: TextIO) -> None:
    print(f"report {r.report_id}  {_time(r.created_ms)}", file=out)
    print(f"  reporter: {r.reporter_username} ({r.reporter_account_id})", file=out)
    print(f"  reported: {r.reported_username} ({r.reported_account_id})", file=out)
    print(f"  reason:   {r.reason!r}" if r.reason else "  reason:   (none given)", file=out)
    for i, m in enumerate(r.messages):
        print(f"  message {i + 1} ({m.message_id}):", file=out)
        if m.text is not None:
            print(f"    text:       {m.text!r}", file=out)
        a = m.attachment
        if a is not None:
            print(
                f"    attachment: {a.file_name!r}, {a.size} bytes, {a.content_type!r},"
                f" blob sha256 {a.digest.hex()}",
                file=out,
            )
        print(f"    sent:       {_time(m.sent_ms)} (sender's clock)", file=out)
        print(
            f"    server:     {_time(m.server_ms)}, device {m.sender_device_id} -> device"
            f" {m.recipient_device_id}",
            file=out,
        )
        print(f"    {_verification(m)}", file=out)
