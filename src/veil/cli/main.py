"""Entry point of the ``veil`` command: argument parsing and the subcommands.

Subcommands:

* ``veil selfcheck [--json]`` -- run the protocol core's self-check
  (:data:`veil.core.selfcheck.CHECKS`, a list of ``(name, check)`` pairs where each ``check()``
  raises on failure) and exit 0 when every check passes, 1 otherwise.
* ``veil server [--host H] [--port P] [--data-dir D] [--database-url URL] [--config FILE]
  [--log-level L]`` -- run the server (:func:`veil.server.main.run`) until SIGTERM/SIGINT;
  settings come from defaults < TOML file < ``VEIL_*`` environment < flags
  (:func:`veil.server.config.load_config`). Exit 0 after a clean stop, 2 on a bad setting,
  3 when the server cannot start.
* ``veil server migrate [same options]`` -- apply the database migrations, print the schema
  version and exit.

The server is imported only inside its handler, so ``veil --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from veil import __version__

Check = Callable[[], None]

SELFCHECK_MODULE = "veil.core.selfcheck"


class SelfcheckUnavailableError(Exception):
    """The core's self-check cannot be loaded; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one self-check."""

    name: str
    ok: bool
    ms: float
    error: str | None = None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``veil`` with every implemented subcommand."""
    parser = argparse.ArgumentParser(
        prog="veil",
        description="Veil: an end-to-end encrypted messenger.",
    )
    parser.add_argument("--version", action="version", version=f"veil {__version__}")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="the device profile folder (default $VEIL_PROFILE, else "
        "${XDG_DATA_HOME:-~/.local/share}/veil/profile)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse to talk to anyone whose identity key changed until it is verified again",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")

    selfcheck = commands.add_parser(
        "selfcheck",
        help="run a quick self-check of the protocol core",
        description="Run the protocol core's self-checks; exit 0 if all pass, 1 otherwise.",
    )
    selfcheck.add_argument(
        "--json", action="store_true", help="print one JSON report instead of progress lines"
    )
    selfcheck.set_defaults(handler=_cmd_selfcheck)
    _add_server_parser(commands)
    from veil.cli.chat import add_chat_parsers  # noqa: PLC0415 - keeps `veil server` light

    add_chat_parsers(commands)
    from veil.cli.rules import add_rules_parsers  # noqa: PLC0415

    add_rules_parsers(commands)
    from veil.cli.tui import add_tui_parser  # noqa: PLC0415 - Textual loads only for `chat`

    add_tui_parser(commands)
    from veil.cli.calls import add_call_parsers  # noqa: PLC0415

    add_call_parsers(commands)
    from veil.cli.demo import add_demo_parser  # noqa: PLC0415

    add_demo_parser(commands)
    from veil.cli.admin import add_admin_parser  # noqa: PLC0415

    add_admin_parser(commands)
    return parser


_SERVER_EPILOG = """\
settings, lowest to highest precedence: defaults, the TOML file (--config or $VEIL_CONFIG;
keys: host, port, data_dir, database_url, nats_url, log_level, queue_retention_days, ...),
the environment (VEIL_HOST, VEIL_PORT, VEIL_DATA_DIR, VEIL_DATABASE_URL, VEIL_NATS_URL,
VEIL_LOG_LEVEL, VEIL_QUEUE_RETENTION_DAYS), then these flags.
Without --database-url the data is a SQLite database (WAL) at DATA_DIR/veil.db; the default
DATA_DIR is ${XDG_DATA_HOME:-~/.local/share}/veil.
"""


def _add_server_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # In the `migrate` sub-command the flags default to SUPPRESS, so that a flag given before
    # `migrate` (veil server --port 1 migrate) is not reset by the sub-parser's default.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--host", default=default, help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=default, help="TCP port to listen on (default 8080)"
    )
    parser.add_argument(
        "--data-dir",
        "--data",
        dest="data_dir",
        metavar="DIR",
        default=default,
        help="data folder, created with mode 0700 (default ${XDG_DATA_HOME:-~/.local/share}/veil)",
    )
    parser.add_argument(
        "--database-url",
        dest="database_url",
        metavar="URL",
        default=default,
        help="postgresql://user[:password]@host[:port]/db, or sqlite:///path/to/veil.db"
        " (default: SQLite at DATA_DIR/veil.db)",
    )
    parser.add_argument(
        "--config", metavar="FILE", default=default, help="TOML settings file (or $VEIL_CONFIG)"
    )
    parser.add_argument(
        "--queue-retention-days",
        dest="queue_retention_days",
        type=int,
        metavar="DAYS",
        default=default,
        help="delete envelopes not delivered within DAYS days (default 30)",
    )
    parser.add_argument(
        "--log-level",
        dest="log_level",
        metavar="LEVEL",
        default=default,
        help="critical, error, warning, info (default), debug or trace",
    )


def _add_server_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = commands.add_parser(
        "server",
        help="run the Veil server (or: veil server migrate)",
        description="Run the Veil server until SIGTERM or Ctrl-C (exit 0 after a clean stop).",
        epilog=_SERVER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_server_options(server, suppress=False)
    server.set_defaults(handler=_cmd_server)
    actions = server.add_subparsers(title="actions", metavar="[migrate]", dest="server_action")
    migrate = actions.add_parser(
        "migrate",
        help="apply the database migrations and exit",
        description="Apply pending database migrations, print the schema version and exit.",
        epilog=_SERVER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_server_options(migrate, suppress=True)


def load_checks() -> list[tuple[str, Check]]:
    """Import :data:`veil.core.selfcheck.CHECKS` and validate its shape."""
    try:
        module = importlib.import_module(SELFCHECK_MODULE)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == SELFCHECK_MODULE:
            reason = f"no protocol self-check in this build ({SELFCHECK_MODULE} is missing)"
        else:
            reason = f"cannot import {SELFCHECK_MODULE}: {exc}"
        raise SelfcheckUnavailableError(reason) from exc
    checks = getattr(module, "CHECKS", None)
    if not isinstance(checks, list | tuple) or not all(map(_is_check, checks)):
        raise SelfcheckUnavailableError(
            f"{SELFCHECK_MODULE}.CHECKS is not a list of (name, callable) pairs"
        )
    if not checks:
        raise SelfcheckUnavailableError(f"{SELFCHECK_MODULE}.CHECKS is empty")
    return [(name, check) for name, check in checks]


def _is_check(item: object) -> bool:
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], str)
        and callable(item[1])
    )


def run_check(name: str, check: Check) -> CheckResult:
    """Run one check and time it; any exception it raises is a failure."""
    start = time.perf_counter()
    try:
        check()
    except Exception as exc:  # a failing check may raise anything
        error: str | None = f"{type(exc).__name__}: {exc}"
    else:
        error = None
    ms = (time.perf_counter() - start) * 1000
    return CheckResult(name=name, ok=error is None, ms=ms, error=error)


def _cmd_selfcheck(args: argparse.Namespace, out: TextIO) -> int:
    as_json: bool = args.json
    try:
        checks = load_checks()
    except SelfcheckUnavailableError as exc:
        if as_json:
            _print_json(out, ok=False, error=str(exc), checks=[])
        print(f"veil selfcheck: {exc}", file=sys.stderr)
        return 1

    results: list[CheckResult] = []
    for index, (name, check) in enumerate(checks, start=1):
        if not as_json:
            print(f"[{index}/{len(checks)}] {name} ... ", end="", file=out, flush=True)
        result = run_check(name, check)
        results.append(result)
        if not as_json:
            status = "ok" if result.ok else "FAILED"
            print(f"{status} ({result.ms:.1f} ms)", file=out, flush=True)
            if result.error is not None:
                print(f"    {result.error}", file=out, flush=True)

    failed = [result.name for result in results if not result.ok]
    if as_json:
        _print_json(out, ok=not failed, error=None, checks=results)
    elif failed:
        print(f"{len(failed)} of {len(results)} checks FAILED: {', '.join(failed)}", file=out)
    else:
        print(f"all {len(results)} checks passed", file=out)
    return 1 if failed else 0


def _cmd_server(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio  # noqa: PLC0415 - the server loads only when it is asked for

    from veil.server import main as server  # noqa: PLC0415
    from veil.server.config import ConfigError, load_config  # noqa: PLC0415

    flags = {name: getattr(args, name) for name in ("host", "port", "data_dir", "database_url")}
    flags["log_level"] = args.log_level
    flags["queue_retention_days"] = args.queue_retention_days
    try:
        config = load_config(config_file=args.config, overrides=flags)
    except ConfigError as exc:
        print(f"veil server: {exc}", file=sys.stderr)
        return 2
    try:
        if args.server_action == "migrate":
            asyncio.run(server.migrate(config, out))
            return 0
        return server.run(config, out)
    except server.StorageUnavailableError as exc:
        print(f"veil server: {exc}", file=sys.stderr)
        return server.STARTUP_FAILURE


def _print_json(out: TextIO, *, ok: bool, error: str | None, checks: list[CheckResult]) -> None:
    report = {
        "veil": __version__,
        "ok": ok,
        "error": error,
        "passed": sum(result.ok for result in checks),
        "failed": sum(not result.ok for result in checks),
        "checks": [
            {"name": r.name, "ok": r.ok, "ms": round(r.ms, 3), "error": r.error} for r in checks
        ],
    }
    print(json.dumps(report, indent=2), file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``veil`` with ``argv`` (default: the process arguments); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, TextIO], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args, sys.stdout)
    except KeyboardInterrupt:
        print("veil: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
