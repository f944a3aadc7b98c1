"""Messages: the per-device envelopes of one send, and what a device receives.

HTTP ``PUT /v1/messages/{account_id}`` carries a :class:`SendRequest` (JSON). The device's
WebSocket carries MessagePack frames both ways: the server pushes :data:`ServerFrame` values
(envelopes, "queue empty", answers to sends, "prekeys low"); the device sends
:data:`ClientFrame` values (acks, and sends -- the same :class:`SendRequest` as over HTTP,
tagged with a request id, so a connected device needs no HTTP round trip per message).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from veil.wire.errors import ErrorBody
from veil.wire.types import AccountId, DeviceId, RegistrationId

MAX_CONTENT: Final = 256 * 1024
"""Largest ciphertext of one envelope (bigger payloads go through attachments)."""
MAX_ENVELOPES: Final = 256
"""At most this many envelopes in one send (127 devices each for recipient and sender)."""

EnvelopeType = Annotated[int, msgspec.Meta(ge=1, le=255)]
IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
]
"""1-64 printable ASCII characters (no spaces)."""


FrankingTag = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
"""HMAC-SHA256(Kf, content): the sender's commitment to the message (message franking)."""


class OutgoingEnvelopeIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One device's copy. ``account_id`` defaults to the recipient; the sender's own account
    id marks a copy for one of the sender's other devices. ``franking_tag`` is bound by the
    server to sender, recipient and time (the reporting tag delivered with the envelope);
    Veil clients always send one and discard a message whose tag does not verify."""

    device_id: DeviceId
    registration_id: RegistrationId
    type: EnvelopeType
    content: Annotated[bytes, msgspec.Meta(max_length=MAX_CONTENT)]
    account_id: AccountId | None = None
    franking_tag: FrankingTag | None = None


class SendRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One message for every device of the recipient (and of the sender, for sync)."""

    envelopes: Annotated[list[OutgoingEnvelopeIn], msgspec.Meta(max_length=MAX_ENVELOPES)]
    idempotency_key: IdempotencyKey | None = None


class StoredEnvelope(msgspec.Struct, frozen=True):
    """Where one copy was stored."""

    account_id: AccountId
    device_id: DeviceId
    envelope_id: int


class SendResponse(msgspec.Struct, frozen=True):
    """The send is durably stored; ``duplicate`` if the idempotency key had been used."""

    server_ms: int
    envelopes: list[StoredEnvelope]
    duplicate: bool


class Mismatch(msgspec.Struct, frozen=True):
    """Device ids of one account the sender must add, drop, or refresh (new session)."""

    account_id: AccountId
    missing: list[int]
    extra: list[int]
    stale: list[int]


class EnvelopeOut(msgspec.Struct, frozen=True, array_like=True):
    """An envelope as a device receives it.

    ``franking_tag`` is the sender's (empty if it sent none); ``reporting_tag`` is the
    server's HMAC over it, the sender, this device and ``server_ms`` under its reporting
    secret number ``franking_key_id`` (what a report reveals). ``request``: the sender may
    not start a chat with this account (no conversation, no mutual follow), so the message
    belongs in the recipient's message requests.
    """

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


class Deliver(msgspec.Struct, frozen=True, tag="env", array_like=True):
    """Server -> device: queued envelopes, in queue order."""

    envelopes: list[EnvelopeOut]


class QueueEmpty(msgspec.Struct, frozen=True, tag="empty", array_like=True):
    """Server -> device: everything queued so far has been delivered."""


class Ack(msgspec.Struct, frozen=True, tag="ack", array_like=True):
    """Device -> server: these envelopes are processed; delete them."""

    envelope_ids: Annotated[list[int], msgspec.Meta(max_length=1024)]


RequestId = Annotated[int, msgspec.Meta(ge=0, le=(1 << 53) - 1)]
"""Chosen by the device to match an answer to its send (any value; reuse is its business)."""


class SendFrame(
    msgspec.Struct, frozen=True, tag="send", array_like=True, forbid_unknown_fields=True
):
    """Device -> server: a :class:`SendRequest` for ``recipient`` over the WebSocket.

    Answered by :class:`Sent` or :class:`SendFailed` with the same ``request_id``. The
    checks, the idempotency key and "stored before answered" are those of the HTTP route.
    """

    request_id: RequestId
    recipient: AccountId
    envelopes: Annotated[list[OutgoingEnvelopeIn], msgspec.Meta(max_length=MAX_ENVELOPES)]
    idempotency_key: IdempotencyKey | None = None


class Sent(msgspec.Struct, frozen=True, tag="sent", array_like=True):
    """Server -> device: the send ``request_id`` is durably stored."""

    request_id: int
    response: SendResponse


class SendFailed(msgspec.Struct, frozen=True, tag="send_failed", array_like=True):
    """Server -> device: the send ``request_id`` was refused; nothing of it was stored.

    ``status`` and ``error`` are what the HTTP route would have answered (e.g. 409
    ``device_mismatch`` with the missing/extra/stale devices, 429 ``queue_full``).
    """

    request_id: int
    status: int
    error: ErrorBody


class KeysLow(msgspec.Struct, frozen=True, tag="keys_low", array_like=True):
    """Server -> device: few one-time prekeys are left; upload more (``PUT /v1/keys``).

    Sent when a bundle fetch leaves the device below the threshold, and on connection while
    it is below.
    """

    one_time_prekeys: int
    kyber_prekeys: int


ServerFrame = Deliver | QueueEmpty | Sent | SendFailed | KeysLow
ClientFrame = Ack | SendFrame
CLOSE_REPLACED: Final = 4000
"""WebSocket close code: the same device connected again elsewhere."""
CLOSE_POLICY: Final = 1008
