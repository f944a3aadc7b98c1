"""The DHKEMs of HPKE (RFC 9180 §4.1, §7.1) over the NIST curves and X25519/X448.

DHKEM(P-256, HKDF-SHA256) 0x0010, DHKEM(P-384, HKDF-SHA384) 0x0011, DHKEM(P-521, HKDF-SHA512)
0x0012, DHKEM(X25519, HKDF-SHA256) 0x0020 and DHKEM(X448, HKDF-SHA512) 0x0021, with
``DeriveKeyPair`` (§7.1.3: rejection sampling with the bitmask for the P-curves) and the
Serialize/DeserializePrivateKey formats of §7.1.2 (big-endian scalar for the P-curves, the raw
string for X25519/X448; clamping is done by the primitive). Public keys are validated when
deserialized (§7.1.4: on-curve points; an all-zero X25519/X448 shared secret is refused).

The ephemeral key of ``Encap`` is ``DeriveKeyPair(rng(Nsk))`` (§4, GenerateKeyPair), so a
seeded ``rng`` gives reproducible output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veil.core.crypto.hpke_kdf import KDFS, Kdf, i2osp
from veil.core.errors import InvalidKeyError, LocalError
from veil.core.rng import Rng

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
        return b"KEM" + i2osp(self.id, 2)

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
