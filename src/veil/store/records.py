"""Plain records the device store reads and writes (ARCHITECTURE.md §6.1, §6.9).

Frozen, slotted dataclasses with no behaviour beyond validation of their closed vocabularies
(trust states, message directions and statuses). Anything secret or private is left out of
``repr``: the account's credential and identity private key entirely, message text,
attachment pointers and outbox contents as a length only, so records can be logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from veil.core.call_log import CALL_LOG_OUTCOMES

TRUST_STATES: Final = frozenset({"unverified", "verified", "changed"})
"""Trust in a peer's identity key: never checked, checked by the user, or changed since."""

DIRECTIONS: Final = frozenset({"in", "out"})

OUT_STATUSES: Final = ("sending", "sent", "delivered", "read", "failed")
"""Statuses of a message we sent; the first four in the only order they may advance."""

IN_STATUSES: Final = ("received", "read")
"""Statuses of a message we received, in the only order they may advance."""


def _hidden(value: bytes | str | None) -> str:
    """A stand-in for a private value in ``repr``: its presence and length only."""
    if value is None:
        return "None"
    unit = "bytes" if isinstance(value, bytes) else "chars"
    return f"<{len(value)} {unit}>"


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """This device's account: where it lives, who it is, and its long-term secrets."""

    server_url: str
    account_id: str
    device_id: int
    credential: str = field(repr=False)
    username: str
    identity_private: bytes = field(repr=False)
    registration_id: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """A peer's identity key as we know it, with our trust in it."""

    account_id: str
    identity_key: bytes
    trust: str
    """``"unverified"``, ``"verified"`` or ``"changed"`` (:data:`TRUST_STATES`)."""
    first_seen_ms: int
    changed_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    """A peer account and the username it had when we last looked."""

    account_id: str
    username: str


CALL_MEDIA: Final = ("audio", "video")
CALL_OUTCOMES: Final = CALL_LOG_OUTCOMES
"""How a call ended, as the call log shows it: it connected (``completed``); an incoming
call rang here unanswered (``missed``, also when this device was busy), was declined, or was
taken on another of our devices (``answered_elsewhere``); an outgoing call was declined, met
only busy devices (``busy``), rang out (``no_answer``) or was hung up before an answer
(``cancelled``); or it was answered but never connected (``failed``). The same words, in the
same order, as a synced :class:`~veil.core.call_log.CallLogEntry` carries."""


@dataclass(frozen=True, slots=True)
class CallLog:
    """What a call-log line (a message of kind ``"call"``) records about the call."""

    media: str
    """``"video"`` if video was offered, else ``"audio"`` (:data:`CALL_MEDIA`)."""
    outcome: str
    """One of :data:`CALL_OUTCOMES`."""
    end_reason: str
    """The call's own end reason (``hangup``, ``timeout``, ``peer_lost``, ...)."""
    duration_ms: int | None = None
    """How long it was connected (None: it never connected)."""


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message of a 1:1 conversation, sent or received.

    ``conversation`` is the peer's account id; ``message_id`` (16 bytes, from the content) is
    unique per sender within a conversation. ``status`` is one of :data:`OUT_STATUSES` for
    ``direction == "out"`` and of :data:`IN_STATUSES` for ``"in"``. ``attachment`` is an
    encoded attachment pointer, opaque to the store; ``attachment_path`` is where the
    downloaded file lives, relative to the profile folder.
    """

    conversation: str
    message_id: bytes
    direction: str
    sender_account_id: str
    sender_device_id: int
    sent_ms: int
    server_ms: int | None
    received_ms: int | None
    text: str | None
    attachment: bytes | None
    attachment_path: str | None
    status: str
    kind: str = "message"
    """``"message"``; ``"timer"``: a line "the timer is now ``expire_timer_s``"; ``"call"``:
    a call-log line (``call`` says how it went; ``message_id`` is the call id)."""
    expire_timer_s: int = 0
    """The message's disappearing timer (0: it stays)."""
    expire_at_ms: int | None = None
    """When it disappears from this device (None: not counting, or no timer)."""
    franking: bytes | None = None
    """Evidence to report a received message (opaque to the store; see the engine)."""
    call: CallLog | None = None
    """For a call-log line (kind ``"call"``): the call's media, outcome and duration."""

    def __repr__(self) -> str:
        """Every field but the private ones (text, attachment pointer, file path): lengths."""
        return (
            f"MessageRecord(conversation={self.conversation!r},"
            f" message_id={self.message_id.hex()!r}, direction={self.direction!r},"
            f" sender_account_id={self.sender_account_id!r},"
            f" sender_device_id={self.sender_device_id!r}, sent_ms={self.sent_ms!r},"
            f" server_ms={self.server_ms!r}, received_ms={self.received_ms!r},"
            f" text={_hidden(self.text)}, attachment={_hidden(self.attachment)},"
            f" attachment_path={_hidden(self.attachment_path)}, status={self.status!r},"
            f" kind={self.kind!r}, expire_timer_s={self.expire_timer_s!r},"
            f" expire_at_ms={self.expire_at_ms!r}, franking={_hidden(self.franking)},"
            f" call={self.call!r})"
        )


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One line of the conversation list: the latest message and the unread count."""

    conversation: str
    username: str | None
    last_ms: int
    last_text: str | None
    unread: int
    count: int
    timer_s: int = 0
    """The conversation's disappearing-message timer (0: off)."""
    state: str = "accepted"
    """``"accepted"`` or ``"request"`` (a message request not yet accepted)."""
    last_kind: str = "message"
    """The latest line's kind (:data:`MESSAGE_KINDS`): a ``"call"`` or ``"timer"`` line has no
    text; ``last_call`` (and ``last_direction``) say what to show instead."""
    last_direction: str = "in"
    """The latest line's direction, ``"in"`` or ``"out"``."""
    last_call: CallLog | None = None
    """The latest line's call details, when it is a call-log line (kind ``"call"``)."""

    def __repr__(self) -> str:
        """Every field but the text of the last message (its length only)."""
        return (
            f"ConversationSummary(conversation={self.conversation!r},"
            f" username={self.username!r}, last_ms={self.last_ms!r},"
            f" last_text={_hidden(self.last_text)}, unread={self.unread!r},"
            f" count={self.count!r}, timer_s={self.timer_s!r}, state={self.state!r},"
            f" last_kind={self.last_kind!r}, last_direction={self.last_direction!r},"
            f" last_call={self.last_call!r})"
        )


CONVERSATION_STATES: Final = ("accepted", "request")
MESSAGE_KINDS: Final = ("message", "timer", "call")


@dataclass(frozen=True, slots=True)
class ConversationSettings:
    """A conversation's timer and state (defaults when nothing was recorded)."""

    conversation: str
    timer_s: int = 0
    state: str = "accepted"
    known: bool = False
    """Whether a row exists (False: nothing happened in this conversation yet)."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An encoded content waiting to be sent; ``item_id`` is assigned by the store."""

    item_id: int | None
    conversation: str
    message_id: bytes
    content: bytes
    created_ms: int
    attempts: int = 0

    def __repr__(self) -> str:
        """Every field but the content (its length only)."""
        return (
            f"OutboxItem(item_id={self.item_id!r}, conversation={self.conversation!r},"
            f" message_id={self.message_id.hex()!r}, content={_hidden(self.content)},"
            f" created_ms={self.created_ms!r}, attempts={self.attempts!r})"
        )
