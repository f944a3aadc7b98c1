"""PQXDH key agreement as libsignal runs it (PQXDH spec rev. 3, §3; WIRE.md §3.2-3.3).

Secret input (initiator A, responder B):

    0xFF×32 ‖ DH(IK_A, SPK_B) ‖ DH(EK_A, IK_B) ‖ DH(EK_A, SPK_B) [‖ DH(EK_A, OPK_B)] ‖ SS_Kyber

HKDF-SHA256(salt=None, info="WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024") gives the root
key and the first chain key (libsignal also draws a third 32-byte SPQR key, which a classic
session does not use; HKDF output is a prefix, so 64 bytes suffice).

The initiator checks both prekey signatures (spec §3.3: "Alice verifies the signatures...");
the responder refuses a non-canonical base key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from veil.core.crypto import xeddsa
from veil.core.crypto.kdf import hkdf_sha256
from veil.core.crypto.kyber import KyberKeyPair, KyberPublicKey
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import InvalidKeyError, LocalError

KDF_INFO: Final = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
_F: Final = b"\xff" * 32
MAX_DEVICE_ID: Final = 127
MAX_ID: Final = 0xFFFFFFFF
"""Prekey and registration ids are uint32 on the wire."""


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """What the server hands out for one device of a peer (PQXDH spec §3.2)."""

    registration_id: int
    device_id: int
    identity_key: PublicKey
    signed_prekey_id: int
    signed_prekey: PublicKey
    signed_prekey_signature: bytes
    kyber_prekey_id: int
    kyber_prekey: KyberPublicKey
    kyber_prekey_signature: bytes
    prekey_id: int | None = None
    prekey: PublicKey | None = None

    def __post_init__(self) -> None:
        if (self.prekey_id is None) != (self.prekey is None):
            raise LocalError("a one-time prekey needs both its id and its key")
        if not 1 <= self.device_id <= MAX_DEVICE_ID:
            raise LocalError(f"device id must be 1..{MAX_DEVICE_ID}")
        ids = {
            "registration id": self.registration_id,
            "signed prekey id": self.signed_prekey_id,
            "Kyber prekey id": self.kyber_prekey_id,
        }
        if self.prekey_id is not None:
            ids["one-time prekey id"] = self.prekey_id
        for what, value in ids.items():
            if not 0 <= value <= MAX_ID:
                raise LocalError(f"{what} must be an unsigned 32-bit integer")

    def verify_signatures(self) -> None:
        """Raise :class:`InvalidSignatureError` unless both prekey signatures verify."""
        xeddsa.require_valid(
            self.identity_key,
            self.signed_prekey.serialize(),
            self.signed_prekey_signature,
            "signed prekey",
        )
        xeddsa.require_valid(
            self.identity_key,
            self.kyber_prekey.serialize(),
            self.kyber_prekey_signature,
            "Kyber prekey",
        )


@dataclass(frozen=True, slots=True)
class InitiatorResult:
    """The initiator's view of a completed PQXDH."""

    root_key: bytes
    chain_key: bytes
    kyber_ciphertext: bytes

    def __repr__(self) -> str:
        return "InitiatorResult(<secret keys hidden>)"


def _derive(secret_input: bytes) -> tuple[bytes, bytes]:
    out = hkdf_sha256(secret_input, None, KDF_INFO, 64)
    return out[:32], out[32:]


def initiate(identity: PrivateKey, base_key: PrivateKey, bundle: PreKeyBundle) -> InitiatorResult:
    """Alice's side (spec §3.3). The caller has already checked the bundle's signatures."""
    parts = [
        _F,
        identity.agree(bundle.signed_prekey),
        base_key.agree(bundle.identity_key),
        base_key.agree(bundle.signed_prekey),
    ]
    if bundle.prekey is not None:
        parts.append(base_key.agree(bundle.prekey))
    kyber_secret, kyber_ct = bundle.kyber_prekey.encapsulate()
    parts.append(kyber_secret)
    root, chain = _derive(b"".join(parts))
    return InitiatorResult(root, chain, kyber_ct)


def respond(
    identity: PrivateKey,
    signed_prekey: PrivateKey,
    one_time_prekey: PrivateKey | None,
    kyber_prekey: KyberKeyPair,
    their_identity: PublicKey,
    their_base_key: PublicKey,
    kyber_ciphertext: bytes,
) -> tuple[bytes, bytes]:
    """Bob's side (spec §3.4): (root key, chain key). Refuses a non-canonical base key."""
    if not their_base_key.is_canonical():
        raise InvalidKeyError("PQXDH base key is not canonical")
    parts = [
        _F,
        signed_prekey.agree(their_identity),
        identity.agree(their_base_key),
        signed_prekey.agree(their_base_key),
    ]
    if one_time_prekey is not None:
        parts.append(one_time_prekey.agree(their_base_key))
    parts.append(kyber_prekey.decapsulate(kyber_ciphertext))
    return _derive(b"".join(parts))
