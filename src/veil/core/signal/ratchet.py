"""Double Ratchet key derivation as libsignal does it (Double Ratchet rev. 4 §3; WIRE.md §3.4).

* KDF_RK(rk, dh_out) = HKDF-SHA256(salt=rk, ikm=dh_out, info="WhisperRatchet") -> 64 bytes,
  split into the new root key and a chain key (spec §5.2 recommends HKDF with the root key
  as salt).
* KDF_CK: message-key seed = HMAC-SHA256(ck, 0x01); next chain key = HMAC-SHA256(ck, 0x02).
* Message keys = HKDF-SHA256(salt=None, ikm=seed, info="WhisperMessageKeys") -> 80 bytes:
  AES-256 key (32) ‖ HMAC key (32) ‖ CBC IV (16).

Message-key *seeds* are what skipped-message storage keeps; keys are derived when used.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from veil.core.crypto.kdf import hkdf_sha256, hmac_sha256, hmac_sha256_pair
from veil.core.crypto.x25519 import PrivateKey, PublicKey

ROOT_INFO: Final = b"WhisperRatchet"
MESSAGE_KEYS_INFO: Final = b"WhisperMessageKeys"
_SEED_INPUT: Final = b"\x01"
_CHAIN_INPUT: Final = b"\x02"


class MessageKeys(NamedTuple):
    """The keys that protect one message."""

    cipher_key: bytes
    mac_key: bytes
    iv: bytes

    def __repr__(self) -> str:
        return "MessageKeys(<hidden>)"


def kdf_rk(
    root_key: bytes, our_ratchet: PrivateKey, their_ratchet: PublicKey
) -> tuple[bytes, bytes]:
    """One DH ratchet half-step: (new root key, new chain key)."""
    out = hkdf_sha256(our_ratchet.agree(their_ratchet), root_key, ROOT_INFO, 64)
    return out[:32], out[32:]


def message_seed(chain_key: bytes) -> bytes:
    """KDF_CK output 1: the seed of this chain position's message keys."""
    return hmac_sha256(chain_key, _SEED_INPUT)


def next_chain_key(chain_key: bytes) -> bytes:
    """KDF_CK output 2: the next chain key."""
    return hmac_sha256(chain_key, _CHAIN_INPUT)


def chain_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """KDF_CK both outputs at once: (message-key seed, next chain key)."""
    return hmac_sha256_pair(chain_key, _SEED_INPUT, _CHAIN_INPUT)


def message_keys(seed: bytes) -> MessageKeys:
    """Expand a message-key seed into cipher key, MAC key and IV."""
    out = hkdf_sha256(seed, None, MESSAGE_KEYS_INFO, 80)
    return MessageKeys(out[:32], out[32:64], out[64:])


def message_key_material(seed: bytes) -> bytes:
    """The 80 bytes of :func:`message_keys` unsplit: key [0:32], MAC key [32:64], IV [64:80]."""
    return hkdf_sha256(seed, None, MESSAGE_KEYS_INFO, 80)
