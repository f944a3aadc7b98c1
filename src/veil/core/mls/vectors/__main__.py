"""``python -m veil.core.mls.vectors FILE...``: run official MLS test-vector files.

Prints ``name: N passed, M failed, K skipped (reasons)`` per file, with ``--per-suite`` the
counts per cipher suite and with ``-v`` each failure; exits 1 if any case failed or a file has
no runner, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

from veil.core.mls.vectors import run_cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m veil.core.mls.vectors",
        description="Run official MLS (RFC 9420) test-vector files and count the results.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="vector files (JSON)")
    parser.add_argument("--per-suite", action="store_true", help="counts per cipher suite")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each failure")
    args = parser.parse_args(argv)
    ok = True
    for path in args.files:
        try:
            with open(path, encoding="utf-8") as f:
                cases = json.load(f)
            result = run_cases(path, cases)
        except (OSError, ValueError, LookupError) as exc:
            print(f"{path}: error: {exc}")
            ok = False
            continue
        print(result.line())
        if args.per_suite:
            for suite, (p, f_, s) in sorted(result.per_suite.items()):
                print(f"  suite {suite}: {p} passed, {f_} failed, {s} skipped")
        if args.verbose:
            for failure in result.failures:
                print(f"  FAIL {failure}")
        ok = ok and result.failed == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
