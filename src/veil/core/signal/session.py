"""Starting sessions and encrypting / decrypting messages (libsignal's session cipher rules).

Double Ratchet spec rev. 4 §3.3-3.4 (initialization, RatchetEncrypt) and PQXDH rev. 3 §3.3-3.4
(sending and receiving the initial message); the receiving rules live in
:mod:`veil.core.signal.receive`.

Every function here is sans-I/O: randomness (``rng``) and time (``now_ms``) are parameters;
keys the caller stores are reached through :class:`PreKeySource`; identity trust is the
caller's :data:`TrustPolicy`. State changes only on success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

from veil.core.crypto import cbc
from veil.core.crypto.kyber import KyberKeyPair
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import (
    BadMacError,
    InvalidPreKeyError,
    LocalError,
    NoSessionError,
    SessionExpiredError,
)
from veil.core.rng import Rng
from veil.core.signal import pqxdh, ratchet
from veil.core.signal.pqxdh import PreKeyBundle
from veil.core.signal.receive import (
    TrustPolicy,
    canonical_layout,
    decrypt_in_order,
    decrypt_with_record,
    require_trusted,
)
from veil.core.signal.state import (
    MAX_UNACKNOWLEDGED_MS,
    PendingPreKey,
    ReceiverChain,
    SessionRecord,
    SessionState,
)
from veil.core.signal.wire import (
    CIPHERTEXT_VERSION,
    PREKEY_TYPE,
    WHISPER_TYPE,
    PreKeySignalMessage,
    SignalMessage,
    encode_signal_message,
)

SESSION_VERSION: Final = CIPHERTEXT_VERSION

__all__ = [
    "CiphertextMessage",
    "LocalIdentity",
    "PreKeyDecryptResult",
    "PreKeySource",
    "TrustPolicy",
    "decrypt_prekey",
    "decrypt_signal",
    "encrypt",
    "initiate",
]


class PreKeySource(Protocol):
    """Our private prekeys, looked up by id when a PreKey message arrives."""

    def signed_prekey(self, key_id: int) -> PrivateKey | None:
        """The signed prekey with this id, or None."""

    def kyber_prekey(self, key_id: int) -> KyberKeyPair | None:
        """The Kyber prekey with this id, or None."""

    def one_time_prekey(self, key_id: int) -> PrivateKey | None:
        """The one-time EC prekey with this id, or None if unknown or used."""


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """Our device's long-term identity and registration id (uint32; Signal apps use 14 bits)."""

    identity: PrivateKey
    registration_id: int

    def __post_init__(self) -> None:
        if not 0 <= self.registration_id <= pqxdh.MAX_ID:
            raise LocalError("registration id must be an unsigned 32-bit integer")


class CiphertextMessage(NamedTuple):
    """An encrypted message and its Signal type (2 = whisper, 3 = PreKey)."""

    type: int
    serialized: bytes

    def __repr__(self) -> str:
        return f"CiphertextMessage(type={self.type}, {len(self.serialized)} bytes)"


@dataclass(frozen=True, slots=True)
class PreKeyDecryptResult:
    """What decrypting a PreKey message gave, and which prekeys the caller should retire."""

    plaintext: bytes
    remote_identity: PublicKey
    used_one_time_prekey_id: int | None
    used_kyber_prekey_id: int | None
    used_signed_prekey_id: int | None

    def __repr__(self) -> str:
        return (
            f"PreKeyDecryptResult({len(self.plaintext)} bytes, "
            f"one_time={self.used_one_time_prekey_id}, kyber={self.used_kyber_prekey_id})"
        )


def initiate(
    record: SessionRecord,
    bundle: PreKeyBundle,
    local: LocalIdentity,
    *,
    rng: Rng,
    now_ms: int,
    trust: TrustPolicy,
    peer: str = "peer",
) -> None:
    """Start a session from ``bundle`` (PQXDH initiator) and make it ``record``'s current state.

    Checks trust in the bundle's identity and both prekey signatures first; on any error the
    record is unchanged. The next :func:`encrypt` produces a PreKey message.
    """
    if now_ms < 0:
        raise LocalError("now_ms must not be negative")
    require_trusted(trust, bundle.identity_key, peer)
    bundle.verify_signatures()
    base_key = PrivateKey.generate(rng)
    agreed = pqxdh.initiate(local.identity, base_key, bundle)
    sending = PrivateKey.generate(rng)
    root, send_chain = ratchet.kdf_rk(agreed.root_key, sending, bundle.signed_prekey)
    state = SessionState(
        version=SESSION_VERSION,
        local_identity=local.identity.public_key,
        remote_identity=bundle.identity_key,
        root_key=root,
        sender_ratchet=sending,
        sender_chain_key=send_chain,
        sender_index=0,
        previous_counter=0,
        receiver_chains=[ReceiverChain(bundle.signed_prekey, agreed.chain_key, 0)],
        pending_prekey=PendingPreKey(
            pre_key_id=bundle.prekey_id,
            signed_pre_key_id=bundle.signed_prekey_id,
            kyber_pre_key_id=bundle.kyber_prekey_id,
            kyber_ciphertext=agreed.kyber_ciphertext,
            base_key=base_key.public_key,
            timestamp_ms=now_ms,
        ),
        local_registration_id=local.registration_id,
        remote_registration_id=bundle.registration_id,
        alice_base_key=base_key.public_key,
    )
    record.promote_state(state)


def encrypt(
    record: SessionRecord,
    plaintext: bytes,
    *,
    now_ms: int,
    trust: TrustPolicy,
    peer: str = "peer",
) -> CiphertextMessage:
    """Encrypt ``plaintext`` on the current sending chain (spec §3.4 RatchetEncrypt)."""
    state = record.current
    if state is None:
        raise NoSessionError(f"no session with {peer}")
    pending = state.pending_prekey
    if pending is not None and pending.timestamp_ms + MAX_UNACKNOWLEDGED_MS < now_ms:
        raise SessionExpiredError(f"the session with {peer} was never acknowledged; start anew")
    require_trusted(trust, state.remote_identity, peer)
    seed, next_chain_key = ratchet.chain_step(state.sender_chain_key)
    km = ratchet.message_key_material(seed)  # cipher key ‖ MAC key ‖ IV
    serialized = encode_signal_message(
        km[32:64],
        state.local_identity.serialize() + state.remote_identity.serialize(),
        state.sender_ratchet.public_key,
        state.sender_index,
        state.previous_counter,
        cbc.encrypt(km[:32], km[64:], plaintext),
        state.version,
    )
    state.sender_chain_key = next_chain_key
    state.sender_index += 1
    if pending is None:
        return CiphertextMessage(WHISPER_TYPE, serialized)
    message = SignalMessage.parse(serialized)
    wrapped = PreKeySignalMessage.build(
        registration_id=state.local_registration_id,
        pre_key_id=pending.pre_key_id,
        signed_pre_key_id=pending.signed_pre_key_id,
        kyber_pre_key_id=pending.kyber_pre_key_id,
        kyber_ciphertext=pending.kyber_ciphertext,
        base_key=pending.base_key,
        identity_key=state.local_identity,
        message=message,
    )
    return CiphertextMessage(PREKEY_TYPE, wrapped.serialized)


def decrypt_signal(
    record: SessionRecord,
    data: bytes,
    *,
    rng: Rng,
    trust: TrustPolicy,
    peer: str = "peer",
) -> bytes:
    """Decrypt a SignalMessage (type 2) with the session(s) in ``record``."""
    canonical = canonical_layout(data)
    if canonical is not None:
        plaintext = decrypt_in_order(record, data, canonical, trust)
        if plaintext is not None:
            return plaintext
    message = SignalMessage.parse(data, canonical)
    if record.current is None and not record.previous:
        raise NoSessionError(f"no session with {peer}")
    return decrypt_with_record(record, message, rng, trust, peer)


def decrypt_prekey(
    record: SessionRecord,
    data: bytes,
    local: LocalIdentity,
    prekeys: PreKeySource,
    *,
    rng: Rng,
    trust: TrustPolicy,
    peer: str = "peer",
) -> PreKeyDecryptResult:
    """Decrypt a PreKeySignalMessage (type 3), starting a session as responder if needed.

    A message whose base key matches a session we already have reuses it. On success the
    caller should delete the used one-time prekey; on failure ``record`` is unchanged.
    """
    message = PreKeySignalMessage.parse(data)
    require_trusted(trust, message.identity_key, peer)
    work = record.copy()
    used_one_time = used_kyber = used_signed = None
    if work.promote_matching(message.version, message.base_key):
        # The header is not authenticated; the reused state's MAC uses its own identity, so a
        # header naming another identity is forged (libsignal does not check this).
        assert work.current is not None
        if work.current.remote_identity != message.identity_key:
            raise BadMacError("PreKey header identity differs from the session it reuses")
    else:
        state = _respond(message, local, prekeys)
        work.promote_state(state)
        used_one_time = message.pre_key_id
        used_kyber = message.kyber_pre_key_id
        used_signed = message.signed_pre_key_id
    plaintext = decrypt_with_record(work, message.message, rng, trust, peer)
    record.adopt(work)
    return PreKeyDecryptResult(
        plaintext, message.identity_key, used_one_time, used_kyber, used_signed
    )


def _respond(
    message: PreKeySignalMessage, local: LocalIdentity, prekeys: PreKeySource
) -> SessionState:
    signed = prekeys.signed_prekey(message.signed_pre_key_id)
    if signed is None:
        raise InvalidPreKeyError("signed prekey", message.signed_pre_key_id)
    kyber = prekeys.kyber_prekey(message.kyber_pre_key_id)
    if kyber is None:
        raise InvalidPreKeyError("Kyber prekey", message.kyber_pre_key_id)
    one_time = None
    if message.pre_key_id is not None:
        one_time = prekeys.one_time_prekey(message.pre_key_id)
        if one_time is None:
            raise InvalidPreKeyError("one-time prekey", message.pre_key_id)
    root, chain = pqxdh.respond(
        local.identity,
        signed,
        one_time,
        kyber,
        message.identity_key,
        message.base_key,
        message.kyber_ciphertext,
    )
    return SessionState(
        version=message.version,
        local_identity=local.identity.public_key,
        remote_identity=message.identity_key,
        root_key=root,
        sender_ratchet=signed,
        sender_chain_key=chain,
        sender_index=0,
        previous_counter=0,
        receiver_chains=[],
        pending_prekey=None,
        local_registration_id=local.registration_id,
        remote_registration_id=message.registration_id,
        alice_base_key=message.base_key,
    )
