"""MLS cipher suites and their labelled cryptography (RFC 9420 §5, §8, §9, §17.1).

:func:`suite` maps a suite id (1-7, §17.1) to a :class:`CipherSuite`: the HPKE KEM/KDF/AEAD
(``veil.core.crypto.hpke``), the hash and HMAC of the suite name and the signature scheme.
On it sit the functions the RFC names:

* ``hash``, ``mac`` (HMAC, §17.1), ``extract``/``expand`` (KDF);
* ``expand_with_label``, ``derive_secret`` (§8) and ``derive_tree_secret`` (§9);
* ``ref_hash`` (§5.2);
* ``sign_with_label``/``verify_with_label`` (§5.1.2): Ed25519/Ed448 raw (RFC 8032), ECDSA
  DER-encoded over the suite's hash (RFC 8446 signature schemes); ECDSA uses deterministic
  nonces (RFC 6979) and EdDSA is deterministic, so no randomness is drawn;
* ``encrypt_with_label``/``decrypt_with_label`` (§5.1.3, HPKE SealBase/OpenBase);
* ``derive_key_pair`` (HPKE DeriveKeyPair), ``aead_encrypt``/``aead_decrypt``.

Labels are given without the ``"MLS 1.0 "`` prefix; the functions add it. Key formats follow
the test vectors: HPKE private keys as SerializePrivateKey, ECDSA private keys as a big-endian
scalar, EdDSA private keys as the raw seed; public keys as raw bytes (an uncompressed point for
ECDSA).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veil.core.crypto.hpke import (
    P256_ORDER,
    P384_ORDER,
    P521_ORDER,
    Hpke,
    HpkeDecryptError,
    hpke_suite,
)
from veil.core.errors import InvalidKeyError, LocalError
from veil.core.mls.codec import Writer
from veil.core.mls.errors import MlsDecryptError, UnsupportedSuiteError
from veil.core.rng import Rng

PREFIX = b"MLS 1.0 "


def _two_opaques(first: bytes, second: bytes) -> bytes:
    w = Writer()
    w.opaque(first)
    w.opaque(second)
    return w.getvalue()


# --- signature schemes (§5.1.2) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _EdDSA:
    """Ed25519 or Ed448: private key = the RFC 8032 seed, public key = its raw encoding."""

    wide: bool

    @property
    def seed_size(self) -> int:
        return 57 if self.wide else 32

    def _private(self, priv: bytes) -> ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey:
        if len(priv) != self.seed_size:
            raise LocalError(f"EdDSA private key must be {self.seed_size} bytes")
        if self.wide:
            return ed448.Ed448PrivateKey.from_private_bytes(priv)
        return ed25519.Ed25519PrivateKey.from_private_bytes(priv)

    def generate(self, rng: Rng) -> bytes:
        return rng(self.seed_size)

    def public(self, priv: bytes) -> bytes:
        return self._private(priv).public_key().public_bytes_raw()

    def sign(self, priv: bytes, data: bytes) -> bytes:
        return self._private(priv).sign(data)

    def verify(self, pub: bytes, data: bytes, signature: bytes) -> bool:
        try:
            if self.wide:
                ed448.Ed448PublicKey.from_public_bytes(pub).verify(signature, data)
            else:
                ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class _ECDSA:
    """ECDSA over a NIST curve: private key = big-endian scalar, signature = DER."""

    curve: type[ec.EllipticCurve]
    hash_alg: type[hashes.HashAlgorithm]
    order: int
    size: int

    def _private(self, priv: bytes) -> ec.EllipticCurvePrivateKey:
        scalar = int.from_bytes(priv, "big")
        if not 0 < scalar < self.order:
            raise LocalError("ECDSA private key is not a valid scalar")
        return ec.derive_private_key(scalar, self.curve())

    def generate(self, rng: Rng) -> bytes:
        mask = (1 << self.order.bit_length()) - 1
        for _ in range(256):
            scalar = int.from_bytes(rng(self.size), "big") & mask
            if 0 < scalar < self.order:
                return scalar.to_bytes(self.size, "big")
        raise LocalError("the rng gave no valid ECDSA scalar in 256 tries")

    def public(self, priv: bytes) -> bytes:
        pub = self._private(priv).public_key()
        return pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def sign(self, priv: bytes, data: bytes) -> bytes:
        algorithm = ec.ECDSA(self.hash_alg(), deterministic_signing=True)
        return self._private(priv).sign(data, algorithm)

    def verify(self, pub: bytes, data: bytes, signature: bytes) -> bool:
        if not pub or pub[0] != 0x04:
            return False
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(self.curve(), pub)
            key.verify(signature, data, ec.ECDSA(self.hash_alg()))
        except (InvalidSignature, ValueError):
            return False
        return True


_SignatureScheme = _EdDSA | _ECDSA


# --- the cipher suite ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """One MLS cipher suite (§17.1). ``nh`` = KDF.Nh, ``nk``/``nn`` = AEAD key/nonce size."""

    id: int
    name: str
    hpke: Hpke
    hash_name: str
    signature: _SignatureScheme

    @property
    def nh(self) -> int:
        return self.hpke.kdf.nh

    @property
    def nk(self) -> int:
        return self.hpke.aead.nk

    @property
    def nn(self) -> int:
        return self.hpke.aead.nn

    # hash, MAC, KDF

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()

    def mac(self, key: bytes, data: bytes) -> bytes:
        """HMAC with the suite's hash (§17.1)."""
        return hmac.digest(key, data, self.hash_name)

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        return self.hpke.kdf.extract(salt, ikm)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        return self.hpke.kdf.expand(prk, info, length)

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        """ExpandWithLabel (§8): KDF.Expand(secret, KDFLabel, length)."""
        w = Writer()
        w.u16(length)
        w.opaque(PREFIX + label)
        w.opaque(context)
        return self.expand(secret, w.getvalue(), length)

    def derive_secret(self, secret: bytes, label: bytes) -> bytes:
        """DeriveSecret (§8) = ExpandWithLabel(secret, label, "", Nh)."""
        return self.expand_with_label(secret, label, b"", self.nh)

    def derive_tree_secret(
        self, secret: bytes, label: bytes, generation: int, length: int
    ) -> bytes:
        """DeriveTreeSecret (§9): the context is the uint32 generation."""
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    def ref_hash(self, label: bytes, value: bytes) -> bytes:
        """RefHash (§5.2): Hash(RefHashInput{label, value}).

        Unlike the other labelled functions, ``label`` is used verbatim, as in the RFC (whose
        callers spell out ``"MLS 1.0 KeyPackage Reference"``); the crypto-basics vector passes
        the bare ``"RefHash"``. Prefer :meth:`key_package_ref` and :meth:`proposal_ref`.
        """
        return self.hash(_two_opaques(label, value))

    def key_package_ref(self, key_package: bytes) -> bytes:
        """MakeKeyPackageRef (§5.2) of an encoded KeyPackage."""
        return self.ref_hash(PREFIX + b"KeyPackage Reference", key_package)

    def proposal_ref(self, authenticated_content: bytes) -> bytes:
        """MakeProposalRef (§5.2) of an encoded AuthenticatedContent."""
        return self.ref_hash(PREFIX + b"Proposal Reference", authenticated_content)

    # signatures

    def sign_with_label(self, priv: bytes, label: bytes, content: bytes, rng: Rng) -> bytes:
        """SignWithLabel (§5.1.2). ``rng`` is unused: both schemes sign deterministically."""
        del rng
        return self.signature.sign(priv, _two_opaques(PREFIX + label, content))

    def verify_with_label(self, pub: bytes, label: bytes, content: bytes, signature: bytes) -> bool:
        """VerifyWithLabel (§5.1.2); False for a bad signature or a malformed key."""
        return self.signature.verify(pub, _two_opaques(PREFIX + label, content), signature)

    def generate_signature_key(self, rng: Rng) -> tuple[bytes, bytes]:
        priv = self.signature.generate(rng)
        return priv, self.signature.public(priv)

    def signature_public(self, priv: bytes) -> bytes:
        return self.signature.public(priv)

    # public-key encryption

    def encrypt_with_label(
        self, pub: bytes, label: bytes, context: bytes, plaintext: bytes, rng: Rng
    ) -> tuple[bytes, bytes]:
        """EncryptWithLabel (§5.1.3): SealBase(pub, EncryptContext, "", plaintext)."""
        info = _two_opaques(PREFIX + label, context)
        try:
            return self.hpke.seal_base(pub, info, b"", plaintext, rng)
        except InvalidKeyError:
            raise LocalError("EncryptWithLabel: invalid HPKE public key") from None

    def decrypt_with_label(
        self, priv: bytes, label: bytes, context: bytes, kem_output: bytes, ciphertext: bytes
    ) -> bytes:
        """DecryptWithLabel (§5.1.3); MlsDecryptError on any failure."""
        info = _two_opaques(PREFIX + label, context)
        try:
            return self.hpke.open_base(kem_output, priv, info, b"", ciphertext)
        except (HpkeDecryptError, InvalidKeyError):
            raise MlsDecryptError("DecryptWithLabel failed") from None

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """HPKE DeriveKeyPair of the suite's KEM: (private, public)."""
        return self.hpke.kem.derive_key_pair(ikm)

    def hpke_public(self, priv: bytes) -> bytes:
        return self.hpke.kem.public_key(priv)

    # AEAD

    def aead_encrypt(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        return self.hpke.aead.seal(key, nonce, aad, pt)

    def aead_decrypt(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        """AEAD open; MlsDecryptError if the tag does not verify."""
        try:
            return self.hpke.aead.open(key, nonce, aad, ct)
        except HpkeDecryptError:
            raise MlsDecryptError("AEAD decryption failed") from None


_ED25519 = _EdDSA(wide=False)
_ED448 = _EdDSA(wide=True)
_P256 = _ECDSA(ec.SECP256R1, hashes.SHA256, P256_ORDER, 32)
_P384 = _ECDSA(ec.SECP384R1, hashes.SHA384, P384_ORDER, 48)
_P521 = _ECDSA(ec.SECP521R1, hashes.SHA512, P521_ORDER, 66)

# id, name, HPKE (KEM, KDF, AEAD ids), hash, signature scheme (§17.1)
_SUITE_TABLE: tuple[tuple[int, str, tuple[int, int, int], str, _SignatureScheme], ...] = (
    (1, "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", (0x20, 1, 1), "sha256", _ED25519),
    (2, "MLS_128_DHKEMP256_AES128GCM_SHA256_P256", (0x10, 1, 1), "sha256", _P256),
    (3, "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519", (0x20, 1, 3), "sha256", _ED25519),
    (4, "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448", (0x21, 3, 2), "sha512", _ED448),
    (5, "MLS_256_DHKEMP521_AES256GCM_SHA512_P521", (0x12, 3, 2), "sha512", _P521),
    (6, "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448", (0x21, 3, 3), "sha512", _ED448),
    (7, "MLS_256_DHKEMP384_AES256GCM_SHA384_P384", (0x11, 2, 2), "sha384", _P384),
)

SUITES: dict[int, CipherSuite] = {
    suite_id: CipherSuite(suite_id, name, hpke_suite(*hpke_ids), hash_name, signature)
    for suite_id, name, hpke_ids, hash_name, signature in _SUITE_TABLE
}


def suite(suite_id: int) -> CipherSuite:
    """The cipher suite with this id; UnsupportedSuiteError if Veil has none."""
    try:
        return SUITES[suite_id]
    except KeyError:
        raise UnsupportedSuiteError(suite_id) from None
