"""Starting sessions and encrypting / decrypting messages (libsignal's session cipher rules).

Double Ratchet spec rev. 4 §3.3-3.5 with libsignal's receiving rules (WIRE.md §3.7): up to
:data:`~veil.core.signal.state.MAX_RECEIVER_CHAINS` receiving chains, at most
:data:`~veil.core.signal.state.MAX_SKIPPED_PER_CHAIN` skipped keys per chain, jumps beyond
:data:`~veil.core.signal.state.MAX_FORWARD_JUMP` refused, duplicates refused with
:class:`DuplicateMessageError`, archived states tried after the current one.

Every function here is sans-I/O: randomness (``rng``) and time (``now_ms``) are parameters;
keys the caller stores are reached through :class:`PreKeySource`; identity trust is the
caller's :data:`TrustPolicy`. State changes only on success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from veil.core.crypto import cbc
from veil.core.crypto.kyber import KyberKeyPair
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import (
    BadMacError,
    DecodeError,
    DecryptionError,
    DuplicateMessageError,
    InvalidPreKeyError,
    NoSessionError,
    SessionExpiredError,
    SpqrRequiredError,
    TooFarAheadError,
    UntrustedIdentityError,
)
from veil.core.rng import Rng
from veil.core.signal import pqxdh, ratchet
from veil.core.signal.pqxdh import PreKeyBundle
from veil.core.signal.state import (
    MAX_FORWARD_JUMP,
    MAX_SKIPPED_PER_CHAIN,
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
)

TrustPolicy = Callable[[PublicKey], bool]
"""Decides whether a peer identity key is trusted (e.g. trust-on-first-use, or strict)."""

SESSION_VERSION: Final = CIPHERTEXT_VERSION


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
    """Our device's long-term identity and registration id."""

    identity: PrivateKey
    registration_id: int


@dataclass(frozen=True, slots=True)
class CiphertextMessage:
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


def _require_trusted(trust: TrustPolicy, identity: PublicKey, peer: str) -> None:
    if not trust(identity):
        raise UntrustedIdentityError(peer)


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
    _require_trusted(trust, bundle.identity_key, peer)
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
    _require_trusted(trust, state.remote_identity, peer)
    chain_key = state.sender_chain_key
    keys = ratchet.message_keys(ratchet.message_seed(chain_key))
    message = SignalMessage.build(
        mac_key=keys.mac_key,
        ratchet_key=state.sender_ratchet.public_key,
        counter=state.sender_index,
        previous_counter=state.previous_counter,
        ciphertext=cbc.encrypt(keys.cipher_key, keys.iv, plaintext),
        sender_identity=state.local_identity,
        receiver_identity=state.remote_identity,
        version=state.version,
    )
    state.sender_chain_key = ratchet.next_chain_key(chain_key)
    state.sender_index += 1
    if pending is None:
        return CiphertextMessage(WHISPER_TYPE, message.serialized)
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
    message = SignalMessage.parse(data)
    if record.current is None and not record.previous:
        raise NoSessionError(f"no session with {peer}")
    return _decrypt_with_record(record, message, rng, trust, peer)


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
    _require_trusted(trust, message.identity_key, peer)
    work = record.copy()
    used_one_time = used_kyber = used_signed = None
    if not work.promote_matching(message.version, message.base_key):
        state = _respond(message, local, prekeys)
        work.promote_state(state)
        used_one_time = message.pre_key_id
        used_kyber = message.kyber_pre_key_id
        used_signed = message.signed_pre_key_id
    plaintext = _decrypt_with_record(work, message.message, rng, trust, peer)
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


def _decrypt_with_record(
    record: SessionRecord, message: SignalMessage, rng: Rng, trust: TrustPolicy, peer: str
) -> bytes:
    errors: list[DecryptionError | DecodeError] = []
    if record.current is not None:
        try:
            return _decrypt_with_state(record.current, message, rng, trust, peer)
        except DuplicateMessageError:
            raise
        except (DecryptionError, DecodeError) as exc:
            errors.append(exc)
    for index, state in enumerate(record.previous):
        try:
            plaintext = _decrypt_with_state(state, message, rng, trust, peer)
        except DuplicateMessageError:
            raise
        except (DecryptionError, DecodeError) as exc:
            errors.append(exc)
            continue
        record.promote_previous(index)
        return plaintext
    if not errors:
        raise NoSessionError(f"no session with {peer}")
    first = errors[0]
    if len(errors) > 1:
        first.add_note(f"{len(errors)} session states tried; all failed")
    raise first


@dataclass(slots=True)
class _Advance:
    """Where a message sits in its receiving chain, computed without touching the chain."""

    seed: bytes
    new_chain_key: bytes
    skipped: list[tuple[int, bytes]]


def _advance(chain: ReceiverChain, counter: int, self_session: bool) -> _Advance | None:
    """Message-key seed for ``counter``; None if it is a skipped key already stored."""
    if counter < chain.index:
        if counter not in chain.skipped:
            raise DuplicateMessageError(chain.index, counter)
        return None
    if counter - chain.index > MAX_FORWARD_JUMP and not self_session:
        raise TooFarAheadError(chain.index, counter, MAX_FORWARD_JUMP)
    chain_key = chain.chain_key
    skipped: list[tuple[int, bytes]] = []
    keep_from = counter - MAX_SKIPPED_PER_CHAIN
    for index in range(chain.index, counter):
        if index >= keep_from:
            skipped.append((index, ratchet.message_seed(chain_key)))
        chain_key = ratchet.next_chain_key(chain_key)
    return _Advance(ratchet.message_seed(chain_key), ratchet.next_chain_key(chain_key), skipped)


def _commit_chain(chain: ReceiverChain, counter: int, advance: _Advance | None) -> None:
    if advance is None:
        del chain.skipped[counter]
        return
    skipped = chain.skipped
    skipped.update(advance.skipped)
    excess = len(skipped) - MAX_SKIPPED_PER_CHAIN
    if excess > 0:
        for old in list(skipped)[:excess]:
            del skipped[old]
    chain.chain_key = advance.new_chain_key
    chain.index = counter + 1


def _decrypt_with_state(
    state: SessionState, message: SignalMessage, rng: Rng, trust: TrustPolicy, peer: str
) -> bytes:
    """Try one state; mutate it only if the message authenticates and decrypts."""
    if message.version != state.version:
        raise DecodeError(f"message version {message.version} != session version {state.version}")
    _require_trusted(trust, state.remote_identity, peer)
    their_key = message.ratchet_key
    chain = state.find_chain(their_key)
    step: tuple[bytes, PrivateKey, bytes] | None = None
    if chain is None:  # DH ratchet step (spec §3.5 DHRatchet), committed only on success
        recv_root, recv_chain = ratchet.kdf_rk(state.root_key, state.sender_ratchet, their_key)
        new_sending = PrivateKey.generate(rng)
        new_root, send_chain = ratchet.kdf_rk(recv_root, new_sending, their_key)
        step = (new_root, new_sending, send_chain)
        chain = ReceiverChain(their_key, recv_chain, 0)
    counter = message.counter
    advance = _advance(chain, counter, state.local_identity == state.remote_identity)
    keys = ratchet.message_keys(chain.skipped[counter] if advance is None else advance.seed)
    if not message.verify_mac(keys.mac_key, state.remote_identity, state.local_identity):
        if message.pq_ratchet:
            raise SpqrRequiredError(
                "message authentication failed; the message carries SPQR data, so either it "
                "was damaged or the peer requires the post-quantum ratchet (SPQR, libsignal "
                ">= 0.92), which Veil does not support yet"
            )
        raise BadMacError("message authentication failed")
    try:
        plaintext = cbc.decrypt(keys.cipher_key, keys.iv, message.ciphertext)
    except DecodeError as exc:
        raise BadMacError("authenticated message has an invalid body") from exc
    if step is not None:
        state.root_key, state.sender_ratchet, state.sender_chain_key = step
        state.add_chain(chain)
        state.previous_counter = max(state.sender_index - 1, 0)
        state.sender_index = 0
    _commit_chain(chain, counter, advance)
    state.pending_prekey = None
    return plaintext
