"""Session state and session records (Double Ratchet spec rev. 4, §3.2 and §3.5; WIRE.md §3.7).

A :class:`SessionState` is one Double Ratchet session with one peer device. A
:class:`SessionRecord` holds the current state and up to 40 archived ones (newest first), which
decryption tries after the current state, as libsignal does.

These objects are mutable for speed, but the functions in :mod:`veil.core.signal.session`
change them only after a message has decrypted and authenticated: a failed decrypt leaves a
record exactly as it was (ARCHITECTURE.md §6.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from veil.core.crypto.x25519 import PrivateKey, PublicKey

MAX_RECEIVER_CHAINS: Final = 5
MAX_SKIPPED_PER_CHAIN: Final = 2000
MAX_FORWARD_JUMP: Final = 25_000
MAX_ARCHIVED_STATES: Final = 40
MAX_UNACKNOWLEDGED_MS: Final = 30 * 24 * 3600 * 1000


@dataclass(slots=True, eq=False)
class ReceiverChain:
    """A receiving chain: the peer's ratchet key, our position in it, and skipped-key seeds."""

    ratchet_key: PublicKey
    chain_key: bytes
    index: int
    skipped: dict[int, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"ReceiverChain({self.ratchet_key!r}, index={self.index}, skipped={len(self.skipped)})"
        )


@dataclass(frozen=True, slots=True)
class PendingPreKey:
    """The PQXDH header the initiator repeats until the responder answers (WIRE.md §3.6)."""

    pre_key_id: int | None
    signed_pre_key_id: int
    kyber_pre_key_id: int
    kyber_ciphertext: bytes
    base_key: PublicKey
    timestamp_ms: int


@dataclass(slots=True, eq=False)
class SessionState:
    """One Double Ratchet session with one peer device."""

    version: int
    local_identity: PublicKey
    remote_identity: PublicKey
    root_key: bytes
    sender_ratchet: PrivateKey
    sender_chain_key: bytes
    sender_index: int
    previous_counter: int
    receiver_chains: list[ReceiverChain]
    pending_prekey: PendingPreKey | None
    local_registration_id: int
    remote_registration_id: int
    alice_base_key: PublicKey

    def find_chain(self, ratchet_key: PublicKey) -> ReceiverChain | None:
        """The receiving chain for ``ratchet_key``, if we still keep it."""
        raw = ratchet_key.raw
        for chain in self.receiver_chains:
            if chain.ratchet_key.raw == raw:
                return chain
        return None

    def add_chain(self, chain: ReceiverChain) -> None:
        """Append a receiving chain, dropping the oldest beyond :data:`MAX_RECEIVER_CHAINS`."""
        self.receiver_chains.append(chain)
        if len(self.receiver_chains) > MAX_RECEIVER_CHAINS:
            del self.receiver_chains[0]

    def __repr__(self) -> str:
        return (
            f"SessionState(v{self.version}, remote={self.remote_identity!r}, "
            f"sent={self.sender_index}, chains={len(self.receiver_chains)}, <keys hidden>)"
        )


class SessionRecord:
    """All session states with one peer device: the current one and archived ones."""

    __slots__ = ("current", "previous")

    def __init__(
        self, current: SessionState | None = None, previous: list[SessionState] | None = None
    ) -> None:
        self.current = current
        self.previous: list[SessionState] = previous if previous is not None else []

    def copy(self) -> SessionRecord:
        """A shallow copy: new lists, the same state objects."""
        return SessionRecord(self.current, list(self.previous))

    def adopt(self, other: SessionRecord) -> None:
        """Take over ``other``'s contents (used to commit a copy after success)."""
        self.current = other.current
        self.previous = other.previous

    def promote_state(self, state: SessionState) -> None:
        """Make ``state`` current, archiving the old current state (newest first)."""
        if self.current is not None:
            self.previous.insert(0, self.current)
            del self.previous[MAX_ARCHIVED_STATES:]
        self.current = state

    def promote_previous(self, index: int) -> None:
        """Make archived state ``index`` current again."""
        state = self.previous.pop(index)
        self.promote_state(state)

    def promote_matching(self, version: int, base_key: PublicKey) -> bool:
        """If a state was set up by this base key, make it current; report whether one was."""
        if self.current is not None and _matches(self.current, version, base_key):
            return True
        for i, state in enumerate(self.previous):
            if _matches(state, version, base_key):
                self.promote_previous(i)
                return True
        return False

    def __repr__(self) -> str:
        return f"SessionRecord(current={self.current!r}, archived={len(self.previous)})"


def _matches(state: SessionState, version: int, base_key: PublicKey) -> bool:
    return state.version == version and state.alice_base_key.raw == base_key.raw
