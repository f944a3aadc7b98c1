"""Runners for the official MLS test vectors (mlswg/mls-implementations, ``test-vectors/``).

One module per vector file, named after it (``tree-math.json`` -> ``tree_math``), each with the
file's format in its docstring and a function ``check(case)`` that raises :class:`Skip` when the
case cannot run here (an unsupported cipher suite, with the reason) and any other exception when
it fails. :func:`run_file` runs every case of a file and counts; ``python -m
veil.core.mls.vectors FILE...`` prints the counts and exits non-zero on any failure.

Only the ``__main__`` entry point reads files; everything here works on parsed JSON.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Case = Mapping[str, Any]


class Skip(Exception):  # noqa: N818 - it is a verdict, not an error
    """This case cannot run here; the message says why (e.g. an unsupported cipher suite)."""


@dataclass
class FileResult:
    """What running one vector file gave."""

    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    per_suite: dict[str, list[int]] = field(default_factory=dict)
    """``suite -> [passed, failed, skipped]`` (key ``"-"`` for files without suites)."""

    def line(self) -> str:
        text = f"{self.name}: {self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        if self.skip_reasons:
            reasons = "; ".join(f"{n} x {why}" for why, n in sorted(self.skip_reasons.items()))
            text += f" ({reasons})"
        return text


def module_name(file_name: str) -> str:
    """``passive-client-welcome.json`` -> ``passive_client_welcome``."""
    stem = file_name.rsplit("/", 1)[-1]
    if stem.endswith(".json"):
        stem = stem[: -len(".json")]
    return stem.replace("-", "_")


def checker(file_name: str) -> Callable[[Case], None]:
    """The ``check`` function for a vector file; LookupError if Veil has none."""
    name = module_name(file_name)
    if not name.isidentifier():
        raise LookupError(f"no runner for {file_name}")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise LookupError(f"no runner for {file_name}") from None
        raise
    check: Callable[[Case], None] = module.check
    return check


def run_cases(file_name: str, cases: Sequence[Case]) -> FileResult:
    """Run every case of one file through its checker."""
    check = checker(file_name)
    result = FileResult(file_name.rsplit("/", 1)[-1])
    for index, case in enumerate(cases):
        suite = str(case.get("cipher_suite", "-"))
        counts = result.per_suite.setdefault(suite, [0, 0, 0])
        try:
            check(case)
        except Skip as skip:
            result.skipped += 1
            counts[2] += 1
            reason = str(skip)
            result.skip_reasons[reason] = result.skip_reasons.get(reason, 0) + 1
        except Exception as exc:
            result.failed += 1
            counts[1] += 1
            result.failures.append(f"case {index} (suite {suite}): {type(exc).__name__}: {exc}")
        else:
            result.passed += 1
            counts[0] += 1
    return result
