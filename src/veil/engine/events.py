"""What the engine takes in (envelopes) and gives out (events), as plain data.

The SDK (:mod:`veil.client`) turns these into its public event types; they carry no secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from veil.core.call_signal import CallSignal
from veil.core.content import AttachmentPointer
from veil.store import MessageRecord


@dataclass(frozen=True, slots=True)
class IncomingEnvelope:
    """An envelope from the server, as the engine needs it."""

    envelope_id: int
    sender_account_id: str
    sender_device_id: int
    server_ms: int
    type: int
    content: bytes
    franking_tag: bytes = b""
    reporting_tag: bytes = b""
    franking_key_id: int = 0
    request: bool = False
    """The server tagged it a message request (no chat, no mutual follow)."""

    def __repr__(self) -> str:
        return (
            f"IncomingEnvelope({self.envelope_id} from {self.sender_account_id}."
            f"{self.sender_device_id}, type {self.type}, {len(self.content)} bytes)"
        )


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A text and/or attachment message from a peer's device."""

    conversation: str
    sender_account_id: str
    sender_device_id: int
    message_id: bytes
    sent_ms: int
    server_ms: int
    envelope_id: int
    text: str | None
    attachment: AttachmentPointer | None
    request: bool = False
    """The conversation is a message request (not accepted yet): no receipts go back."""
    expire_timer_s: int = 0
    """The message disappears this long after it is first read (0: it stays)."""


@dataclass(frozen=True, slots=True)
class SyncedSent:
    """A message one of our other devices sent to ``conversation`` (a sync copy)."""

    conversation: str
    sender_device_id: int
    message_id: bytes
    sent_ms: int
    server_ms: int
    envelope_id: int
    text: str | None
    attachment: AttachmentPointer | None
    expire_timer_s: int = 0


@dataclass(frozen=True, slots=True)
class TimerChanged:
    """The conversation's disappearing-message timer was set to ``seconds`` (0: off) by
    ``by_account_id`` (the peer, or us from another of our devices)."""

    conversation: str
    by_account_id: str
    sender_device_id: int
    seconds: int
    server_ms: int
    envelope_id: int


@dataclass(frozen=True, slots=True)
class ConversationChanged:
    """One of our other devices accepted or declined ``conversation``'s message request,
    or blocked or unblocked the peer (``action``: accept, decline, block, unblock)."""

    conversation: str
    action: str
    sender_device_id: int
    envelope_id: int


@dataclass(frozen=True, slots=True)
class CallSignalReceived:
    """A call signalling message (offer, answer, ICE, ringing, hang-up, ...) from a peer's
    device, or from one of our own devices (``conversation`` is then the peer it concerns).
    Not stored: the call layer acts on it. ``request``: the conversation is a message request
    (the call rings there, not in the inbox)."""

    conversation: str
    sender_account_id: str
    sender_device_id: int
    signal: CallSignal
    server_ms: int
    envelope_id: int
    request: bool = False


@dataclass(frozen=True, slots=True)
class CallLogSynced:
    """Another device of ours (``sender_device_id``) told us how a call with
    ``conversation`` went: ``line`` is the call-log line now stored here (new, or a line that
    only rang here given the fuller outcome; see :mod:`veil.engine.call_log`)."""

    conversation: str
    sender_device_id: int
    line: MessageRecord
    envelope_id: int


@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    """The peer's device got (``delivered``) or showed (``read``) our messages."""

    conversation: str
    sender_device_id: int
    kind: str
    message_ids: tuple[bytes, ...]
    server_ms: int
    envelope_id: int


@dataclass(frozen=True, slots=True)
class TypingChanged:
    """The peer started or stopped typing."""

    conversation: str
    sender_device_id: int
    started: bool
    envelope_id: int


@dataclass(frozen=True, slots=True)
class IdentityChanged:
    """A peer's identity key is not the one we knew (trust-on-first-use accepted it)."""

    account_id: str
    envelope_id: int | None


@dataclass(frozen=True, slots=True)
class DecryptFailure:
    """An envelope that could not be used; ``reason`` is a stable code (see
    :data:`veil.engine.receive.FAILURE_REASONS`). The envelope is acked and dropped."""

    sender_account_id: str
    sender_device_id: int
    envelope_id: int
    reason: str
    server_ms: int


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    """``account_id`` (a peer, or our own account) has a device we had not seen before."""

    account_id: str
    device_id: int


@dataclass(frozen=True, slots=True)
class SessionReset:
    """A broken session with ``account_id``'s device ``device_id`` was replaced by a new one.

    ``by_us``: we could not read that device and asked it to start over (automatic recovery);
    otherwise that device could not read ours, and our recent unconfirmed messages to the
    account were sent again.
    """

    account_id: str
    device_id: int
    by_us: bool
    envelope_id: int | None


Event = (
    MessageReceived
    | SyncedSent
    | ReceiptReceived
    | TypingChanged
    | IdentityChanged
    | DecryptFailure
    | SessionReset
    | DeviceAdded
    | TimerChanged
    | ConversationChanged
    | CallSignalReceived
    | CallLogSynced
)
