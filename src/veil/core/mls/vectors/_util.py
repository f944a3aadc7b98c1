"""Helpers shared by the vector runners of the crypto engineer: hex and suite lookup."""

from __future__ import annotations

from veil.core.mls.errors import UnsupportedSuiteError
from veil.core.mls.suite import CipherSuite, suite
from veil.core.mls.vectors import Case, Skip


def h(text: str | None) -> bytes:
    """Hex to bytes (``None`` -> empty)."""
    return bytes.fromhex(text) if text else b""


def suite_of(case: Case) -> CipherSuite:
    """The case's cipher suite, or Skip if Veil does not implement it."""
    try:
        return suite(int(case["cipher_suite"]))
    except UnsupportedSuiteError as exc:
        raise Skip(f"cipher suite {case['cipher_suite']} not implemented") from exc
