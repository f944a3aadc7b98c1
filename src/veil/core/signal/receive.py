"""Receiving: libsignal's rules for decrypting a SignalMessage with a session record.

Double Ratchet spec rev. 4 §3.5 (RatchetDecrypt, TrySkippedMessageKeys, SkipMessageKeys,
DHRatchet) with libsignal's limits (WIRE.md §3.7): up to
:data:`~veil.core.signal.state.MAX_RECEIVER_CHAINS` receiving chains, at most
:data:`~veil.core.signal.state.MAX_SKIPPED_PER_CHAIN` skipped keys per chain, jumps beyond
:data:`~veil.core.signal.state.MAX_FORWARD_JUMP` refused, duplicates refused with
:class:`DuplicateMessageError`, archived states tried after the current one.

Nothing is changed until a message has authenticated and decrypted: each attempt computes the
new chain position (and, for a new ratchet key, the DH ratchet step) into locals and commits
them only at the end. :func:`decrypt_in_order` is a fast path for the common case (the next
message of a known chain); anything else, including every failure, goes through
:func:`decrypt_with_record`, which raises the precise error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from veil.core.crypto import cbc
from veil.core.crypto.kdf import constant_time_equal, hmac_sha256
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import (
    BadMacError,
    DecodeError,
    DecryptionError,
    DuplicateMessageError,
    NoSessionError,
    SpqrRequiredError,
    TooFarAheadError,
    UntrustedIdentityError,
)
from veil.core.rng import Rng
from veil.core.signal import ratchet
from veil.core.signal.state import (
    MAX_FORWARD_JUMP,
    MAX_SKIPPED_PER_CHAIN,
    ReceiverChain,
    SessionRecord,
    SessionState,
)
from veil.core.signal.wire import MAC_LEN, SignalMessage, parse_canonical

TrustPolicy = Callable[[PublicKey], bool]
"""Decides whether a peer identity key is trusted (e.g. trust-on-first-use, or strict)."""


def require_trusted(trust: TrustPolicy, identity: PublicKey, peer: str) -> None:
    """Raise :class:`UntrustedIdentityError` unless ``trust`` accepts ``identity``."""
    if not trust(identity):
        raise UntrustedIdentityError(peer)


def canonical_layout(data: bytes) -> tuple[bytes, int, int, bytes] | None:
    """:func:`parse_canonical` that answers None (not an error) for anything unusual."""
    try:
        return parse_canonical(data) if data else None
    except DecodeError:
        return None


def decrypt_in_order(
    record: SessionRecord,
    data: bytes,
    canonical: tuple[bytes, int, int, bytes],
    trust: TrustPolicy,
) -> bytes | None:
    """Decrypt the next message of a known chain of the current state, or return None.

    ``canonical`` is :func:`canonical_layout` of ``data``. None means "not this case" (or any
    failure); the caller then runs :func:`decrypt_with_record`, which handles it or raises the
    precise error.
    """
    state = record.current
    key, counter, _previous, ciphertext = canonical
    if state is None or data[0] != ((state.version << 4) | 4) or key[0] != 0x05:
        return None
    raw = key[1:]
    for chain in state.receiver_chains:
        if chain.ratchet_key.raw == raw:
            break
    else:
        return None
    if counter != chain.index or not trust(state.remote_identity):
        return None  # an untrusted identity: the general path raises, after authentication
    seed, next_key = ratchet.chain_step(chain.chain_key)
    km = ratchet.message_key_material(seed)
    identities = state.remote_identity.serialize() + state.local_identity.serialize()
    mac = hmac_sha256(km[32:64], identities + data[:-MAC_LEN])[:MAC_LEN]
    if not constant_time_equal(mac, data[-MAC_LEN:]):
        return None
    try:
        plaintext = cbc.decrypt(km[:32], km[64:], ciphertext)
    except DecodeError:
        return None
    chain.chain_key = next_key
    chain.index += 1
    state.pending_prekey = None
    return plaintext


def decrypt_with_record(
    record: SessionRecord, message: SignalMessage, rng: Rng, trust: TrustPolicy, peer: str
) -> bytes:
    """Try the current state, then archived ones (promoting the one that works)."""
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
        seed, chain_key = ratchet.chain_step(chain_key)
        if index >= keep_from:
            skipped.append((index, seed))
    seed, chain_key = ratchet.chain_step(chain_key)
    return _Advance(seed, chain_key, skipped)


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
    self_session = state.local_identity.raw == state.remote_identity.raw
    advance = _advance(chain, counter, self_session)
    km = ratchet.message_key_material(chain.skipped[counter] if advance is None else advance.seed)
    if not message.verify_mac(km[32:64], state.remote_identity, state.local_identity):
        if message.pq_ratchet:
            raise SpqrRequiredError(
                "message authentication failed; the message carries SPQR data, so either it "
                "was damaged or the peer requires the post-quantum ratchet (SPQR, libsignal "
                ">= 0.92), which Veil does not support yet"
            )
        raise BadMacError("message authentication failed")
    try:
        plaintext = cbc.decrypt(km[:32], km[64:], message.ciphertext)
    except DecodeError as exc:
        raise BadMacError("authenticated message has an invalid body") from exc
    require_trusted(trust, state.remote_identity, peer)  # after authentication, as libsignal
    if step is not None:
        state.root_key, state.sender_ratchet, state.sender_chain_key = step
        state.add_chain(chain)
        state.previous_counter = max(state.sender_index - 1, 0)
        state.sender_index = 0
    _commit_chain(chain, counter, advance)
    state.pending_prekey = None
    return plaintext
