"""MLS-specific errors (RFC 9420), on top of Veil's hierarchy (``veil.core.errors``).

* :class:`UnsupportedSuiteError` -- a cipher suite id Veil does not implement (§5.1,
  §17.1); the caller asked for it, so it is a :class:`~veil.core.errors.LocalError`.
* :class:`MlsDecryptError` -- an AEAD or HPKE decryption failed (§5.1.3, §6.3): the
  ciphertext, key or context does not match; a :class:`~veil.core.errors.RemoteError`.
* :class:`ValidationError` -- a peer's message breaks a MUST of the RFC. ``requirement``
  names the rule, e.g. ``"RFC9420-7.3-leaf-signature"``, so logs and tests can tell the
  checks apart.

None of them ever carries key, secret or plaintext bytes.
"""

from __future__ import annotations

from veil.core.errors import LocalError, RemoteError


class UnsupportedSuiteError(LocalError):
    """The cipher suite (or HPKE KEM/KDF/AEAD) id is not one Veil implements."""

    def __init__(self, suite_id: int, what: str = "MLS cipher suite") -> None:
        super().__init__(f"unsupported {what} 0x{suite_id:04x}")
        self.suite_id = suite_id
        self.what = what


class MlsDecryptError(RemoteError):
    """Decryption failed: wrong key, wrong context or a damaged ciphertext."""


class ValidationError(RemoteError):
    """A received value violates a MUST of RFC 9420; ``requirement`` names which one."""

    def __init__(self, requirement: str, detail: str = "") -> None:
        text = requirement if not detail else f"{requirement}: {detail}"
        super().__init__(text)
        self.requirement = requirement
        self.detail = detail
