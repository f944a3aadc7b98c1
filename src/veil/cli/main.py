"""Entry point of the ``veil`` command: argument parsing and the subcommands.

Subcommands:

* ``veil selfcheck [--json]`` -- run the protocol core's self-check
  (:data:`veil.core.selfcheck.CHECKS`, a list of ``(name, check)`` pairs where each ``check()``
  raises on failure) and exit 0 when every check passes, 1 otherwise.
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
    return parser


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
