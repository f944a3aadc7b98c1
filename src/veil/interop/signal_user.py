"""In-memory Signal users (one account device each) for the JSON-lines peer.

Mirrors the stores of the libsignal harness (``lib.mjs``): identity key pair and registration
id, one signed prekey, one Kyber prekey (kept after use, like a last-resort key), one-time
prekeys (removed when used), sessions and known identities per peer address. Identities are
trusted on first use; with ``strict`` a changed identity key is refused.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from itertools import count
from typing import Any

from veil.core.crypto import xeddsa
from veil.core.crypto.kyber import KyberKeyPair, KyberPublicKey
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import LocalError
from veil.core.signal import session
from veil.core.signal.pqxdh import PreKeyBundle
from veil.core.signal.record import serialize_record
from veil.core.signal.state import SessionRecord
from veil.core.signal.wire import PREKEY_TYPE, WHISPER_TYPE

_registration_ids = count(1000)


@dataclass(frozen=True, slots=True)
class Address:
    """A peer device: its name and device id."""

    name: str
    device_id: int = 1

    def __str__(self) -> str:
        return f"{self.name}.{self.device_id}"


def _opt_private(value: Any) -> PrivateKey | None:
    return PrivateKey(bytes.fromhex(value)) if isinstance(value, str) else None


def now_ms() -> int:
    """Wall-clock time in milliseconds (the core takes time as a parameter)."""
    return int(time.time() * 1000)


class User:
    """One Signal device with in-memory stores; implements :class:`session.PreKeySource`."""

    def __init__(self, req: dict[str, Any]) -> None:
        self.address = Address(req["user"], int(req.get("device_id") or 1))
        reg = req.get("registration_id")
        self.registration_id = int(reg) if reg is not None else next(_registration_ids) & 0x3FFF
        identity = _opt_private(req.get("identity_private")) or PrivateKey.generate(os.urandom)
        self.local = session.LocalIdentity(identity, self.registration_id)
        self.strict = bool(req.get("strict_identity", False))
        self.signed_prekey_id = int(req.get("signed_prekey_id") or 1)
        self.signed = _opt_private(req.get("signed_prekey_private")) or PrivateKey.generate(
            os.urandom
        )
        self.signed_signature = xeddsa.sign(
            identity, self.signed.public_key.serialize(), os.urandom
        )
        self.kyber_prekey_id = int(req.get("kyber_prekey_id") or 1)
        self.kyber = KyberKeyPair.generate(os.urandom)
        self.kyber_signature = xeddsa.sign(identity, self.kyber.public_key.serialize(), os.urandom)
        self.next_prekey_id = int(req.get("prekey_id") or 1)
        self.prekeys: dict[int, PrivateKey] = {}
        self.current_prekey: int | None = None
        self.sessions: dict[Address, SessionRecord] = {}
        self.known: dict[Address, PublicKey] = {}
        if req.get("one_time_prekey", True):
            self.new_one_time_prekey(_opt_private(req.get("prekey_private")))

    # --- PreKeySource -------------------------------------------------------------------
    def signed_prekey(self, key_id: int) -> PrivateKey | None:
        """Our signed prekey, if ``key_id`` names it."""
        return self.signed if key_id == self.signed_prekey_id else None

    def kyber_prekey(self, key_id: int) -> KyberKeyPair | None:
        """Our Kyber prekey, if ``key_id`` names it."""
        return self.kyber if key_id == self.kyber_prekey_id else None

    def one_time_prekey(self, key_id: int) -> PrivateKey | None:
        """An unused one-time prekey."""
        return self.prekeys.get(key_id)

    # --- keys and bundles -----------------------------------------------------------------
    def new_one_time_prekey(self, private: PrivateKey | None = None) -> None:
        """Make a fresh one-time prekey and publish it in the next bundle."""
        key_id = self.next_prekey_id
        self.next_prekey_id += 1
        self.prekeys[key_id] = private or PrivateKey.generate(os.urandom)
        self.current_prekey = key_id

    def bundle_json(self, *, no_prekey: bool = False) -> dict[str, Any]:
        """The bundle a server would hand out for this device (hex byte fields)."""
        pk = None if no_prekey else self.current_prekey
        if pk is not None and pk not in self.prekeys:
            pk = None
        return {
            "name": self.address.name,
            "device_id": self.address.device_id,
            "registration_id": self.registration_id,
            "identity_key": self.local.identity.public_key.serialize().hex(),
            "signed_prekey_id": self.signed_prekey_id,
            "signed_prekey": self.signed.public_key.serialize().hex(),
            "signed_prekey_signature": self.signed_signature.hex(),
            "kyber_prekey_id": self.kyber_prekey_id,
            "kyber_prekey": self.kyber.public_key.serialize().hex(),
            "kyber_prekey_signature": self.kyber_signature.hex(),
            "prekey_id": pk,
            "prekey": self.prekeys[pk].public_key.serialize().hex() if pk is not None else None,
        }

    def secrets_json(self) -> dict[str, Any]:
        """Private material, for byte-level comparisons in tests (never log it)."""
        return {
            "identity_private": self.local.identity.secret_bytes().hex(),
            "signed_prekey_private": self.signed.secret_bytes().hex(),
            "kyber_prekey_seed": self.kyber.seed_bytes().hex(),
            "prekeys": [
                {"id": i, "private": k.secret_bytes().hex()} for i, k in self.prekeys.items()
            ],
        }

    # --- trust ------------------------------------------------------------------------------
    def trust(self, peer: Address) -> session.TrustPolicy:
        """Trust on first use; in strict mode a changed key is untrusted."""
        known = self.known.get(peer)

        def policy(key: PublicKey) -> bool:
            return not self.strict or known is None or known == key

        return policy

    # --- sessions ---------------------------------------------------------------------------
    def process_bundle(self, peer: Address, b: dict[str, Any]) -> None:
        """Start a session with ``peer`` from its bundle (PQXDH initiator)."""
        bundle = bundle_from_json(b, peer.device_id)
        record = self.sessions.get(peer, SessionRecord())
        work = record.copy()
        session.initiate(
            work,
            bundle,
            self.local,
            rng=os.urandom,
            now_ms=now_ms(),
            trust=self.trust(peer),
            peer=str(peer),
        )
        self.sessions[peer] = work
        self.known[peer] = bundle.identity_key

    def encrypt(self, peer: Address, plaintext: bytes) -> session.CiphertextMessage:
        """Encrypt to ``peer``."""
        record = self.sessions.get(peer, SessionRecord())
        return session.encrypt(
            record, plaintext, now_ms=now_ms(), trust=self.trust(peer), peer=str(peer)
        )

    def decrypt(self, peer: Address, msg_type: int, data: bytes) -> bytes:
        """Decrypt a message of type 2 (whisper) or 3 (PreKey) from ``peer``."""
        record = self.sessions.get(peer, SessionRecord())
        trust = self.trust(peer)
        if msg_type == WHISPER_TYPE:
            plaintext = session.decrypt_signal(
                record, data, rng=os.urandom, trust=trust, peer=str(peer)
            )
        elif msg_type == PREKEY_TYPE:
            result = session.decrypt_prekey(
                record, data, self.local, self, rng=os.urandom, trust=trust, peer=str(peer)
            )
            if result.used_one_time_prekey_id is not None:
                self.prekeys.pop(result.used_one_time_prekey_id, None)
            self.known[peer] = result.remote_identity
            plaintext = result.plaintext
        else:
            raise LocalError(f"unsupported message type {msg_type} (expected 2 or 3)")
        self.sessions[peer] = record
        return plaintext

    def session_info(self, peer: Address) -> dict[str, Any]:
        """Whether a session exists, and its record (Veil's own record format)."""
        record = self.sessions.get(peer)
        if record is None:
            return {"has_session": False}
        state = record.current
        return {
            "has_session": True,
            "has_current_state": state is not None,
            "local_registration_id": state.local_registration_id if state else None,
            "remote_registration_id": state.remote_registration_id if state else None,
            "record": serialize_record(record).hex(),
        }


def bundle_from_json(b: dict[str, Any], device_id: int | None = None) -> PreKeyBundle:
    """Parse a bundle in the harness's JSON shape."""
    has_prekey = b.get("prekey") not in (None, "")
    return PreKeyBundle(
        registration_id=int(b["registration_id"]),
        device_id=int(device_id or b.get("device_id") or 1),
        identity_key=PublicKey.deserialize(bytes.fromhex(b["identity_key"])),
        signed_prekey_id=int(b["signed_prekey_id"]),
        signed_prekey=PublicKey.deserialize(bytes.fromhex(b["signed_prekey"])),
        signed_prekey_signature=bytes.fromhex(b["signed_prekey_signature"]),
        kyber_prekey_id=int(b["kyber_prekey_id"]),
        kyber_prekey=KyberPublicKey.deserialize(bytes.fromhex(b["kyber_prekey"])),
        kyber_prekey_signature=bytes.fromhex(b["kyber_prekey_signature"]),
        prekey_id=int(b["prekey_id"]) if has_prekey else None,
        prekey=PublicKey.deserialize(bytes.fromhex(b["prekey"])) if has_prekey else None,
    )
