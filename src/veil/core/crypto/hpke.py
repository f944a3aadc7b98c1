"""HPKE, Hybrid Public Key Encryption (RFC 9180), composed from pyca primitives.

What MLS (RFC 9420 §5.1) needs, and the RFC's exporter:

* KEMs (§4.1, §7.1), in :mod:`veil.core.crypto.hpke_kem`: DHKEM(P-256, HKDF-SHA256) 0x0010,
  DHKEM(P-384, HKDF-SHA384) 0x0011, DHKEM(P-521, HKDF-SHA512) 0x0012, DHKEM(X25519,
  HKDF-SHA256) 0x0020 and DHKEM(X448, HKDF-SHA512) 0x0021, with ``DeriveKeyPair`` (§7.1.3)
  and the Serialize/DeserializePrivateKey formats of §7.1.2.
* KDFs (§7.2), in :mod:`veil.core.crypto.hpke_kdf`: HKDF-SHA256 0x0001, HKDF-SHA384 0x0002,
  HKDF-SHA512 0x0003, and the labelled ``LabeledExtract``/``LabeledExpand`` of §4.
* AEADs (§7.3), here: AES-128-GCM 0x0001, AES-256-GCM 0x0002, ChaCha20Poly1305 0x0003 and
  export-only 0xFFFF.
* Modes (§5.1), here: base (0) and psk (1). ``setup_base_s``/``setup_base_r`` give a
  :class:`Context` with ``seal``/``open`` (§5.2, sequence numbers) and ``export`` (§5.3);
  ``seal_base``/``open_base`` are the single-shot forms of §6.1.

The KEM and KDF names (``Kem``, ``KEMS``, ``Kdf``, ``KDFS``, ``P256_ORDER``...) are re-exported
here, so ``veil.core.crypto.hpke`` stays the one import path for all of HPKE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from veil.core.crypto.hpke_kdf import KDFS, Kdf, i2osp
from veil.core.crypto.hpke_kem import KEMS, P256_ORDER, P384_ORDER, P521_ORDER, Kem
from veil.core.errors import InvalidKeyError, LocalError, RemoteError
from veil.core.rng import Rng

MODE_BASE = 0x00
MODE_PSK = 0x01
EXPORT_ONLY = 0xFFFF


class UnsupportedAlgorithmError(LocalError):
    """An HPKE KEM, KDF or AEAD id that is not implemented here."""


class HpkeDecryptError(RemoteError):
    """``Open`` failed: wrong key, wrong info/aad or a damaged ciphertext."""


# --- AEAD (§7.3) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Aead:
    """An AEAD: key size ``nk``, nonce size ``nn``, tag size ``nt``."""

    id: int
    nk: int
    nn: int
    nt: int

    def _cipher(self, key: bytes) -> AESGCM | ChaCha20Poly1305:
        if self.id == EXPORT_ONLY:
            raise LocalError("export-only HPKE context: no encryption")
        if len(key) != self.nk:
            raise LocalError(f"AEAD key must be {self.nk} bytes")
        return ChaCha20Poly1305(key) if self.id == 0x0003 else AESGCM(key)

    def seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        return self._cipher(key).encrypt(nonce, pt, aad)

    def open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        cipher = self._cipher(key)
        if len(nonce) != self.nn:
            raise LocalError(f"AEAD nonce must be {self.nn} bytes")
        try:
            return cipher.decrypt(nonce, ct, aad)
        except InvalidTag:
            raise HpkeDecryptError("AEAD authentication failed") from None


AEADS: dict[int, Aead] = {
    0x0001: Aead(0x0001, 16, 12, 16),
    0x0002: Aead(0x0002, 32, 12, 16),
    0x0003: Aead(0x0003, 32, 12, 16),
    EXPORT_ONLY: Aead(EXPORT_ONLY, 0, 0, 0),
}


# --- Key schedule and contexts (§5) -------------------------------------------------------


@dataclass(slots=True)
class Context:
    """An HPKE encryption context (§5.2): key, base nonce, sequence number, exporter secret.

    ``seal``/``open`` advance the sequence number; a failed ``open`` does not.
    """

    suite: Hpke
    key: bytes = field(repr=False)
    base_nonce: bytes = field(repr=False)
    exporter_secret: bytes = field(repr=False)
    seq: int = 0

    def _nonce(self) -> bytes:
        if self.seq >= (1 << (8 * self.suite.aead.nn)) - 1:
            raise LocalError("HPKE message limit reached")
        seq_bytes = i2osp(self.seq, self.suite.aead.nn)
        return bytes(a ^ b for a, b in zip(self.base_nonce, seq_bytes, strict=True))

    def seal(self, aad: bytes, pt: bytes) -> bytes:
        ct = self.suite.aead.seal(self.key, self._nonce(), aad, pt)
        self.seq += 1
        return ct

    def open(self, aad: bytes, ct: bytes) -> bytes:
        pt = self.suite.aead.open(self.key, self._nonce(), aad, ct)
        self.seq += 1
        return pt

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """Secret export (§5.3)."""
        if length > 255 * self.suite.kdf.nh:
            raise LocalError("export length too large")
        return self.suite.kdf.labeled_expand(
            self.suite.suite_id, self.exporter_secret, b"sec", exporter_context, length
        )


@dataclass(frozen=True, slots=True)
class Hpke:
    """One HPKE cipher suite: a KEM, a KDF and an AEAD."""

    kem: Kem
    kdf: Kdf
    aead: Aead

    @property
    def suite_id(self) -> bytes:
        return b"HPKE" + i2osp(self.kem.id, 2) + i2osp(self.kdf.id, 2) + i2osp(self.aead.id, 2)

    def key_schedule(
        self, mode: int, shared_secret: bytes, info: bytes, psk: bytes = b"", psk_id: bytes = b""
    ) -> Context:
        """KeySchedule (§5.1) for the base and psk modes."""
        if mode not in (MODE_BASE, MODE_PSK) or (mode == MODE_PSK) != bool(psk and psk_id):
            raise LocalError("HPKE mode and PSK inputs are inconsistent")
        sid, kdf = self.suite_id, self.kdf
        psk_id_hash = kdf.labeled_extract(sid, b"", b"psk_id_hash", psk_id)
        info_hash = kdf.labeled_extract(sid, b"", b"info_hash", info)
        context = bytes((mode,)) + psk_id_hash + info_hash
        secret = kdf.labeled_extract(sid, shared_secret, b"secret", psk)
        key = kdf.labeled_expand(sid, secret, b"key", context, self.aead.nk)
        nonce = kdf.labeled_expand(sid, secret, b"base_nonce", context, self.aead.nn)
        exporter = kdf.labeled_expand(sid, secret, b"exp", context, kdf.nh)
        return Context(self, key, nonce, exporter)

    def setup_base_s(self, pk_r: bytes, info: bytes, rng: Rng) -> tuple[bytes, Context]:
        """SetupBaseS (§5.1.1): (enc, sender context)."""
        shared_secret, enc = self.kem.encap(pk_r, rng)
        return enc, self.key_schedule(MODE_BASE, shared_secret, info)

    def setup_base_r(self, enc: bytes, sk_r: bytes, info: bytes) -> Context:
        """SetupBaseR (§5.1.1): the receiver context. A bad ``enc`` raises HpkeDecryptError."""
        try:
            shared_secret = self.kem.decap(enc, sk_r)
        except InvalidKeyError:
            raise HpkeDecryptError("invalid encapsulated key") from None
        return self.key_schedule(MODE_BASE, shared_secret, info)

    def seal_base(
        self, pk_r: bytes, info: bytes, aad: bytes, pt: bytes, rng: Rng
    ) -> tuple[bytes, bytes]:
        """Single-shot SealBase (§6.1): (enc, ciphertext)."""
        enc, ctx = self.setup_base_s(pk_r, info, rng)
        return enc, ctx.seal(aad, pt)

    def open_base(self, enc: bytes, sk_r: bytes, info: bytes, aad: bytes, ct: bytes) -> bytes:
        """Single-shot OpenBase (§6.1); HpkeDecryptError on any failure."""
        return self.setup_base_r(enc, sk_r, info).open(aad, ct)


def hpke_suite(kem_id: int, kdf_id: int, aead_id: int) -> Hpke:
    """The HPKE suite for these ids; UnsupportedAlgorithmError if one is unknown."""
    for table, value, what in (
        (KEMS, kem_id, "KEM"),
        (KDFS, kdf_id, "KDF"),
        (AEADS, aead_id, "AEAD"),
    ):
        if value not in table:
            raise UnsupportedAlgorithmError(f"unsupported HPKE {what} 0x{value:04x}")
    return Hpke(KEMS[kem_id], KDFS[kdf_id], AEADS[aead_id])


__all__ = [
    "AEADS",
    "EXPORT_ONLY",
    "KDFS",
    "KEMS",
    "MODE_BASE",
    "MODE_PSK",
    "P256_ORDER",
    "P384_ORDER",
    "P521_ORDER",
    "Aead",
    "Context",
    "Hpke",
    "HpkeDecryptError",
    "Kdf",
    "Kem",
    "UnsupportedAlgorithmError",
    "hpke_suite",
]
