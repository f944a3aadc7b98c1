"""Server-side records: what the key directory and account store hold.

Plain frozen dataclasses, independent of any database. Keys are stored exactly as uploaded
(Signal encodings: ``0x05 || X25519`` public keys, ``0x08 || Kyber1024`` public keys, 64-byte
XEdDSA signatures); the services check them before they reach a repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MIN_DEVICE_ID: Final = 1
MAX_DEVICE_ID: Final = 127
PRIMARY_DEVICE_ID: Final = 1


@dataclass(frozen=True, slots=True)
class Account:
    """A registered account. ``username`` is the canonical (case-folded) form."""

    account_id: str
    username: str
    display_username: str
    identity_key: bytes
    created_ms: int


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A device about to be registered; ``credential_hash`` is never the credential itself."""

    registration_id: int
    credential_hash: bytes
    name: str

    def __repr__(self) -> str:
        return f"NewDevice(registration_id={self.registration_id}, name={self.name!r})"


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device of an account."""

    account_id: str
    device_id: int
    registration_id: int
    credential_hash: bytes
    name: str
    created_ms: int

    def __repr__(self) -> str:
        return (
            f"Device(account_id={self.account_id!r}, device_id={self.device_id}, "
            f"registration_id={self.registration_id}, name={self.name!r})"
        )


@dataclass(frozen=True, slots=True)
class SignedPreKey:
    """A device's current signed EC prekey."""

    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class KyberPreKey:
    """A signed Kyber1024 prekey: one-time, or the device's last-resort key."""

    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class OneTimePreKey:
    """An unsigned one-time EC prekey."""

    key_id: int
    public_key: bytes


@dataclass(frozen=True, slots=True)
class DeviceBundle:
    """What a bundle fetch returns for one device (PQXDH spec §3.2)."""

    device_id: int
    registration_id: int
    identity_key: bytes
    signed_prekey: SignedPreKey
    kyber_prekey: KyberPreKey
    kyber_last_resort: bool
    one_time_prekey: OneTimePreKey | None


@dataclass(frozen=True, slots=True)
class PreKeyCounts:
    """How many unused one-time keys a device has left (for the "prekeys low" signal)."""

    one_time_ec: int
    one_time_kyber: int


@dataclass(frozen=True, slots=True)
class OutgoingEnvelope:
    """One device's copy of a message, as the sender submits it.

    ``registration_id`` is the one the sender's session knows for that device; a mismatch
    means the device was re-registered (stale). ``content`` is opaque ciphertext.
    """

    account_id: str
    device_id: int
    registration_id: int
    type: int
    content: bytes
    franking_tag: bytes | None = None
    """The sender's franking tag (32 bytes), if it sent one."""
    reporting_tag: bytes | None = None
    """The server's tag over it (:func:`veil.core.franking.reporting_tag`), set by the
    message service before storing."""
    franking_key_id: int = 0
    """Which reporting secret made ``reporting_tag``."""

    def __repr__(self) -> str:
        return (
            f"OutgoingEnvelope({self.account_id}.{self.device_id}, type={self.type}, "
            f"{len(self.content)} bytes)"
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """A stored envelope in one device's queue. ``envelope_id`` orders the queue."""

    envelope_id: int
    account_id: str
    device_id: int
    sender_account_id: str
    sender_device_id: int
    server_ms: int
    type: int
    content: bytes
    franking_tag: bytes = b""
    reporting_tag: bytes = b""
    franking_key_id: int = 0
    request: bool = False
    """The sender may not start a chat with the recipient: a message request."""

    def __repr__(self) -> str:
        return (
            f"Envelope({self.envelope_id} for {self.account_id}.{self.device_id} from "
            f"{self.sender_account_id}.{self.sender_device_id}, {len(self.content)} bytes)"
        )


@dataclass(frozen=True, slots=True)
class DeviceMismatch:
    """Why a send was refused: the submitted device set differs from an account's devices."""

    account_id: str
    missing: tuple[int, ...]
    extra: tuple[int, ...]
    stale: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A send that is durably stored: one envelope id per target device, and the server time.

    ``duplicate`` is True when the idempotency key had been used: nothing new was stored and
    the first send's answer is returned.
    """

    server_ms: int
    envelope_ids: dict[tuple[str, int], int]
    duplicate: bool = False
    request: bool = False
    """The recipient's copies were stored as a message request."""
    dropped: frozenset[tuple[str, int]] = frozenset()
    """Targets that were not stored (the recipient blocks the sender) though ids were
    answered for them, so that the sender cannot tell."""


@dataclass(frozen=True, slots=True)
class Provisioning:
    """A new device's provisioning mailbox (the message itself is read only when taken)."""

    provisioning_id: str
    token_hash: bytes
    expires_ms: int
    has_message: bool

    def __repr__(self) -> str:
        return (
            f"Provisioning({self.provisioning_id}, expires_ms={self.expires_ms}, "
            f"has_message={self.has_message})"
        )


@dataclass(frozen=True, slots=True)
class Attachment:
    """An uploaded blob's metadata; ``complete`` once all its bytes are stored."""

    attachment_id: str
    account_id: str
    created_ms: int
    expires_ms: int
    complete: bool
    size: int
    sha256: bytes | None


@dataclass(frozen=True, slots=True)
class LinkedAccount:
    """Another account in a follow or block list: id, display username, since when."""

    account_id: str
    display_username: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class Relation:
    """Between one account (A) and another (B); see :class:`veil.wire.social.Relationship`."""

    following: bool
    """A follows B."""
    followed_by: bool
    """B follows A."""
    accepted: bool
    """A accepts B's messages in the inbox (chats(owner=A, peer=B))."""
    accepted_by: bool
    """B accepts A's messages (chats(owner=B, peer=A))."""
    blocked: bool
    """A blocks B."""
