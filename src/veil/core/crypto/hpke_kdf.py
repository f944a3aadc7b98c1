"""The HKDF-based KDFs of HPKE (RFC 9180 §7.2) and the labelled forms of §4.

HKDF-SHA256 0x0001, HKDF-SHA384 0x0002 and HKDF-SHA512 0x0003, each with ``Extract`` and
``Expand`` (RFC 5869) and ``LabeledExtract``/``LabeledExpand`` (RFC 9180 §4, prefix
``"HPKE-v1"``), plus ``I2OSP`` (§3). Used by the DHKEMs (:mod:`veil.core.crypto.hpke_kem`) and
the key schedule (:mod:`veil.core.crypto.hpke`).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


def i2osp(value: int, length: int) -> bytes:
    """I2OSP (§3): ``value`` as a ``length``-byte big-endian string."""
    return value.to_bytes(length, "big")


@dataclass(frozen=True, slots=True)
class Kdf:
    """HKDF with one hash: ``Extract``, ``Expand`` and the labelled forms of §4."""

    id: int
    hash_name: str
    nh: int

    def _hash(self) -> hashes.HashAlgorithm:
        return _HASHES[self.hash_name]()

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        """HKDF-Extract (RFC 5869 §2.2); an empty salt means Nh zero bytes."""
        return hmac.digest(salt or bytes(self.nh), ikm, self.hash_name)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """HKDF-Expand (RFC 5869 §2.3)."""
        return HKDFExpand(self._hash(), length, info).derive(prk)

    def labeled_extract(self, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return self.extract(salt, b"HPKE-v1" + suite_id + label + ikm)

    def labeled_expand(
        self, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
    ) -> bytes:
        labeled_info = i2osp(length, 2) + b"HPKE-v1" + suite_id + label + info
        return self.expand(prk, labeled_info, length)


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

KDFS: dict[int, Kdf] = {
    0x0001: Kdf(0x0001, "sha256", 32),
    0x0002: Kdf(0x0002, "sha384", 48),
    0x0003: Kdf(0x0003, "sha512", 64),
}
