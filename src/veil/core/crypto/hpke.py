"""HPKE, Hybrid Public Key Encryption (RFC 9180), composed from pyca primitives.

What MLS (RFC 9420 §5.1) needs, and the RFC's exporter:

* KEMs (§4.1, §7.1): DHKEM(P-256, HKDF-SHA256) 0x0010, DHKEM(P-384, HKDF-SHA384) 0x0011,
  DHKEM(P-521, HKDF-SHA512) 0x0012, DHKEM(X25519, HKDF-SHA256) 0x0020 and
  DHKEM(X448, HKDF-SHA512) 0x0021, with ``DeriveKeyPair`` (§7.1.3: rejection sampling with
  the bitmask for the P-curves) and the Serialize/DeserializePrivateKey formats of §7.1.2
  (big-endian scalar for the P-curves, the raw string for X25519/X448; clamping is done by
  the primitive).
* KDFs (§7.2): HKDF-SHA256 0x0001, HKDF-SHA384 0x0002, HKDF-SHA512 0x0003, and the labelled
  ``LabeledExtract``/``LabeledExpand`` of §4.
* AEADs (§7.3): AES-128-GCM 0x0001, AES-256-GCM 0x0002, ChaCha20Poly1305 0x0003 and
  export-only 0xFFFF.
* Modes (§5.1): base (0) and psk (1). ``setup_base_s``/``setup_base_r`` give a
  :class:`Context` with ``seal``/``open`` (§5.2, sequence numbers) and ``export`` (§5.3);
  ``seal_base``/``open_base`` are the single-shot forms of §6.1.

The ephemeral key of ``Encap`` is ``DeriveKeyPair(rng(Nsk))`` (§4, GenerateKeyPair), so a
seeded ``rng`` gives reproducible output. Public keys are validated when deserialized (§7.1.4:
on-curve points; an all-zero X25519/X448 shared secret is refused).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veil.core.errors import InvalidKeyError, LocalError, RemoteError
from veil.core.rng import Rng

MODE_BASE = 0x00
MODE_PSK = 0x01
EXPORT_ONLY = 0xFFFF


class UnsupportedAlgorithmError(LocalError):
    """An HPKE KEM, KDF or AEAD id that is not implemented here."""


class HpkeDecryptError(RemoteError):
    """``Open`` failed: wrong key, wrong info/aad or a damaged ciphertext."""


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


# --- KDF (§4, §7.2) -----------------------------------------------------------------------


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
        labeled_info = _i2osp(length, 2) + b"HPKE-v1" + suite_id + label + info
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


# --- Diffie-Hellman groups (§7.1) ---------------------------------------------------------


class _Group(Protocol):
    @property
    def nsk(self) -> int: ...
    @property
    def npk(self) -> int: ...

    def derive_private(self, kdf: Kdf, suite_id: bytes, ikm: bytes) -> bytes: ...
    def public(self, sk: bytes) -> bytes: ...
    def dh(self, sk: bytes, pk: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class _NistGroup:
    """P-256/P-384/P-521: private key = big-endian scalar, public key = uncompressed point."""

    curve: type[ec.EllipticCurve]
    order: int
    bitmask: int
    nsk: int
    npk: int

    def _private(self, sk: bytes) -> ec.EllipticCurvePrivateKey:
        """DeserializePrivateKey (RFC 9180 §7.1.2): the SECG octet string of a scalar in
        [1, order-1]. SerializePrivateKey always writes Nsk bytes (see derive_private); a
        shorter big-endian string (leading zero bytes dropped, as some P-521 keys are stored
        with 65 bytes) denotes the same integer and is accepted; a longer one never is."""
        scalar = int.from_bytes(sk, "big")
        if not 0 < len(sk) <= self.nsk or not 0 < scalar < self.order:
            raise InvalidKeyError("HPKE private key is not a valid scalar")
        return ec.derive_private_key(scalar, self.curve())

    def derive_private(self, kdf: Kdf, suite_id: bytes, ikm: bytes) -> bytes:
        dkp_prk = kdf.labeled_extract(suite_id, b"", b"dkp_prk", ikm)
        for counter in range(256):
            candidate = bytearray(
                kdf.labeled_expand(suite_id, dkp_prk, b"candidate", bytes((counter,)), self.nsk)
            )
            candidate[0] &= self.bitmask
            if 0 < int.from_bytes(candidate, "big") < self.order:
                return bytes(candidate)
        raise LocalError("DeriveKeyPairError: no valid scalar in 256 candidates")

    def public(self, sk: bytes) -> bytes:
        pub = self._private(sk).public_key()
        return pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def dh(self, sk: bytes, pk: bytes) -> bytes:
        if len(pk) != self.npk or pk[0] != 0x04:
            raise InvalidKeyError("HPKE public key is not an uncompressed point")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self.curve(), pk)
        except ValueError:
            raise InvalidKeyError("HPKE public key is not on the curve") from None
        return self._private(sk).exchange(ec.ECDH(), peer)


@dataclass(frozen=True, slots=True)
class _MontgomeryGroup:
    """X25519/X448 (RFC 7748): keys are raw byte strings."""

    wide: bool
    nsk: int
    npk: int

    def _private(self, sk: bytes) -> x25519.X25519PrivateKey | x448.X448PrivateKey:
        if len(sk) != self.nsk:
            raise InvalidKeyError(f"HPKE private key must be {self.nsk} bytes")
        if self.wide:
            return x448.X448PrivateKey.from_private_bytes(sk)
        return x25519.X25519PrivateKey.from_private_bytes(sk)

    def derive_private(self, kdf: Kdf, suite_id: bytes, ikm: bytes) -> bytes:
        dkp_prk = kdf.labeled_extract(suite_id, b"", b"dkp_prk", ikm)
        return kdf.labeled_expand(suite_id, dkp_prk, b"sk", b"", self.nsk)

    def public(self, sk: bytes) -> bytes:
        return self._private(sk).public_key().public_bytes_raw()

    def dh(self, sk: bytes, pk: bytes) -> bytes:
        if len(pk) != self.npk:
            raise InvalidKeyError(f"HPKE public key must be {self.npk} bytes")
        try:
            if self.wide:
                shared = x448.X448PrivateKey.from_private_bytes(sk).exchange(
                    x448.X448PublicKey.from_public_bytes(pk)
                )
            else:
                shared = x25519.X25519PrivateKey.from_private_bytes(sk).exchange(
                    x25519.X25519PublicKey.from_public_bytes(pk)
                )
        except ValueError:
            raise InvalidKeyError("DH with a low-order public key") from None
        if not any(shared):
            raise InvalidKeyError("DH output is all zero")
        return shared


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
    "581a0db248b0a77aecec196accc52973",
    16,
)
P521_ORDER = int(
    "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "fa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
    16,
)


# --- DHKEM (§4.1) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kem:
    """DHKEM(Group, KDF): ``nsecret`` shared-secret size, ``nsk``/``npk`` key sizes."""

    id: int
    kdf: Kdf
    group: _Group
    nsecret: int

    @property
    def suite_id(self) -> bytes:
        return b"KEM" + _i2osp(self.id, 2)

    @property
    def nsk(self) -> int:
        return self.group.nsk

    @property
    def npk(self) -> int:
        return self.group.npk

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair (§7.1.3): (SerializePrivateKey(sk), SerializePublicKey(pk))."""
        sk = self.group.derive_private(self.kdf, self.suite_id, ikm)
        return sk, self.group.public(sk)

    def generate_key_pair(self, rng: Rng) -> tuple[bytes, bytes]:
        return self.derive_key_pair(rng(self.nsk))

    def public_key(self, sk: bytes) -> bytes:
        return self.group.public(sk)

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        prk = self.kdf.labeled_extract(self.suite_id, b"", b"eae_prk", dh)
        return self.kdf.labeled_expand(
            self.suite_id, prk, b"shared_secret", kem_context, self.nsecret
        )

    def encap_with_ikm(self, pk_r: bytes, ikm_e: bytes) -> tuple[bytes, bytes]:
        """Encap with the ephemeral key DeriveKeyPair(ikm_e): (shared_secret, enc)."""
        sk_e, enc = self.derive_key_pair(ikm_e)
        dh = self.group.dh(sk_e, pk_r)
        return self._extract_and_expand(dh, enc + pk_r), enc

    def encap(self, pk_r: bytes, rng: Rng) -> tuple[bytes, bytes]:
        """Encap (§4.1): (shared_secret, enc)."""
        return self.encap_with_ikm(pk_r, rng(self.nsk))

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        """Decap (§4.1): the shared secret."""
        dh = self.group.dh(sk_r, enc)
        return self._extract_and_expand(dh, enc + self.group.public(sk_r))


KEMS: dict[int, Kem] = {
    0x0010: Kem(0x0010, KDFS[1], _NistGroup(ec.SECP256R1, P256_ORDER, 0xFF, 32, 65), 32),
    0x0011: Kem(0x0011, KDFS[2], _NistGroup(ec.SECP384R1, P384_ORDER, 0xFF, 48, 97), 48),
    0x0012: Kem(0x0012, KDFS[3], _NistGroup(ec.SECP521R1, P521_ORDER, 0x01, 66, 133), 64),
    0x0020: Kem(0x0020, KDFS[1], _MontgomeryGroup(False, 32, 32), 32),
    0x0021: Kem(0x0021, KDFS[3], _MontgomeryGroup(True, 56, 56), 64),
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
        seq_bytes = _i2osp(self.seq, self.suite.aead.nn)
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
        return b"HPKE" + _i2osp(self.kem.id, 2) + _i2osp(self.kdf.id, 2) + _i2osp(self.aead.id, 2)

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
