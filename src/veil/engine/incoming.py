"""Applying one decrypted, franking-checked content to the device store.

Called by :meth:`veil.engine.Engine.handle` inside its transaction. The conversation rules of
ARCHITECTURE.md §1 live here on the receiving side:

* **blocked** senders: anything from an account we block is dropped unseen (the server
  refuses new sends; this catches what was queued before the block, or a lying server);
* **message requests**: the first message of a conversation makes it ``request`` if the
  server tagged the envelope so (no chat, no mutual follow), else ``accepted``; once a
  request, it stays one until the user accepts it, whatever later envelopes say; a sync copy
  of a message we sent makes it ``accepted`` (we started it). Typing from a request is not
  shown;
* **disappearing messages**: a message carries its own timer; ours (sync copies) count from
  when they were sent, received ones from when they are first read
  (:meth:`veil.store.DeviceStore.mark_read`); a timer update sets the conversation's timer
  and is kept as a line of the conversation;
* **conversation actions** from our other devices (accept, decline, block, unblock);
* **call-log lines** from our other devices (:func:`veil.engine.call_log.record_synced_call`).
"""

from __future__ import annotations

from typing import Final

from veil.core import content as payload
from veil.core.errors import RemoteError
from veil.engine.call_log import record_synced_call
from veil.engine.events import (
    CallLogSynced,
    CallSignalReceived,
    ConversationChanged,
    Event,
    IncomingEnvelope,
    MessageReceived,
    ReceiptReceived,
    SessionReset,
    SyncedSent,
    TimerChanged,
    TypingChanged,
)
from veil.store import DeviceStore, MessageRecord

ACTION_NAMES: Final = {
    payload.ACTION_ACCEPT: "accept",
    payload.ACTION_DECLINE: "decline",
    payload.ACTION_BLOCK: "block",
    payload.ACTION_UNBLOCK: "unblock",
}
_RECEIPT_STATUS: Final = {payload.RECEIPT_DELIVERED: "delivered", payload.RECEIPT_READ: "read"}


class ContentError(RemoteError):
    """Decrypted, but the payload is not something a client can use."""


def message_record(
    conversation: str,
    content: payload.Content,
    direction: str,
    sender: tuple[str, int],
    server_ms: int | None,
    received_ms: int | None,
    status: str,
    franking: bytes | None = None,
) -> MessageRecord:
    """The store's row for a text/attachment or timer-update ``content``. Our own messages
    start disappearing when sent; a received one when it is read (``expire_at_ms`` None)."""
    timer = content.expire_timer_s
    kind = "message"
    if content.timer is not None:
        kind, timer = "timer", content.timer.seconds
    expire_at = None
    if direction == "out" and kind == "message" and timer:
        expire_at = content.sent_ms + timer * 1000
    return MessageRecord(
        conversation=conversation,
        message_id=content.message_id,
        direction=direction,
        sender_account_id=sender[0],
        sender_device_id=sender[1],
        sent_ms=content.sent_ms,
        server_ms=server_ms,
        received_ms=received_ms,
        text=content.text,
        attachment=_pointer_bytes(content),
        attachment_path=None,
        status=status,
        kind=kind,
        expire_timer_s=timer,
        expire_at_ms=expire_at,
        franking=franking,
    )


def _pointer_bytes(content: payload.Content) -> bytes | None:
    if content.attachment is None:
        return None
    return payload.encode_content(
        payload.Content(content.message_id, content.sent_ms, attachment=content.attachment)
    )


class Applier:
    """Applies contents for one device (``me``) to ``store``; see the module docstring."""

    def __init__(self, store: DeviceStore, me: str, now_ms: int) -> None:
        self.store = store
        self.me = me
        self.now_ms = now_ms
        self.blocked = False
        """Set when :meth:`apply` dropped the content because we block its sender."""

    def apply(
        self, envelope: IncomingEnvelope, content: payload.Content, evidence: bytes | None
    ) -> list[Event]:
        """The events of ``content`` (already decrypted and franking-checked); nothing, and
        :attr:`blocked` set, if it comes from an account we block."""
        sender = envelope.sender_account_id
        if sender != self.me and self.store.is_blocked(sender):
            self.blocked = True
            return []
        if content.sync is not None:
            if sender != self.me:
                raise ContentError("a sync copy from another account")
            return self._synced(envelope, content.sync)
        control = self._control(envelope, content)
        if control is not None:
            return control
        if content.text is None and content.attachment is None and content.timer is None:
            raise ContentError("nothing to show")
        request = self._arrival_state(envelope) == "request"
        if content.timer is not None:
            return self._timer(envelope, sender, content, "in")
        record = message_record(
            sender,
            content,
            "in",
            (sender, envelope.sender_device_id),
            envelope.server_ms,
            self.now_ms,
            "received",
            evidence,
        )
        if not self.store.add_message(record):  # the same message again (a resend)
            return []
        return [
            MessageReceived(
                sender,
                sender,
                envelope.sender_device_id,
                content.message_id,
                content.sent_ms,
                envelope.server_ms,
                envelope.envelope_id,
                content.text,
                content.attachment,
                request,
                content.expire_timer_s,
            )
        ]

    def _control(self, envelope: IncomingEnvelope, content: payload.Content) -> list[Event] | None:
        """The events of a receipt, reset, typing or call-signal content; None for others."""
        sender = envelope.sender_account_id
        if content.action is not None:
            raise ContentError("a conversation action outside a sync copy")
        if content.receipt is not None:
            return self._receipt(envelope, content.receipt)
        if content.reset is not None:
            return [SessionReset(sender, envelope.sender_device_id, False, envelope.envelope_id)]
        if content.typing is not None:
            if self.store.settings(sender).state == "request":
                return []
            started = content.typing.started
            return [TypingChanged(sender, envelope.sender_device_id, started, envelope.envelope_id)]
        if content.call is not None:
            settings = self.store.settings(sender)  # a first call rings where a message would
            request = settings.state == "request" if settings.known else envelope.request
            return [
                CallSignalReceived(
                    sender,
                    sender,
                    envelope.sender_device_id,
                    content.call,
                    envelope.server_ms,
                    envelope.envelope_id,
                    request,
                )
            ]
        return None

    def _arrival_state(self, envelope: IncomingEnvelope) -> str:
        """The conversation's state, deciding it on its first message."""
        settings = self.store.settings(envelope.sender_account_id)
        if settings.known:
            return settings.state
        state = "request" if envelope.request else "accepted"
        self.store.set_state(envelope.sender_account_id, state, self.now_ms)
        return state

    def _receipt(self, envelope: IncomingEnvelope, receipt: payload.Receipt) -> list[Event]:
        status = _RECEIPT_STATUS.get(receipt.kind)
        if status is None:
            raise ContentError("unknown receipt kind")
        sender = envelope.sender_account_id
        for message_id in receipt.message_ids:
            self.store.set_status(sender, message_id, status)
        return [
            ReceiptReceived(
                sender,
                envelope.sender_device_id,
                status,
                receipt.message_ids,
                envelope.server_ms,
                envelope.envelope_id,
            )
        ]

    def _timer(
        self, envelope: IncomingEnvelope, conversation: str, content: payload.Content, way: str
    ) -> list[Event]:
        assert content.timer is not None
        by = envelope.sender_account_id
        record = message_record(
            conversation,
            content,
            way,
            (by, envelope.sender_device_id),
            envelope.server_ms,
            self.now_ms,
            "read" if way == "in" else "sent",
        )
        if not self.store.add_message(record):
            return []
        self.store.set_timer(conversation, content.timer.seconds, self.now_ms)
        return [
            TimerChanged(
                conversation,
                by,
                envelope.sender_device_id,
                content.timer.seconds,
                envelope.server_ms,
                envelope.envelope_id,
            )
        ]

    def _synced(self, envelope: IncomingEnvelope, sync: payload.SyncSent) -> list[Event]:
        """A copy of what another of our devices sent to (or did with) ``destination``."""
        inner = payload.decode_content(sync.content, for_sync=True)
        destination = sync.destination
        sync_only = self._sync_only(envelope, destination, inner)
        if sync_only is not None:
            return sync_only
        if not self.store.settings(destination).known:
            self.store.set_state(destination, "accepted", self.now_ms)
        if inner.timer is not None:
            return self._timer(envelope, destination, inner, "out")
        if inner.text is None and inner.attachment is None:
            return []  # receipts, typing: nothing for our other devices to show
        record = message_record(
            destination,
            inner,
            "out",
            (self.me, envelope.sender_device_id),
            envelope.server_ms,
            self.now_ms,
            "sent",
        )
        if not self.store.add_message(record):
            return []
        return [
            SyncedSent(
                destination,
                envelope.sender_device_id,
                inner.message_id,
                inner.sent_ms,
                envelope.server_ms,
                envelope.envelope_id,
                inner.text,
                inner.attachment,
                inner.expire_timer_s,
            )
        ]

    def _sync_only(
        self, envelope: IncomingEnvelope, peer: str, inner: payload.Content
    ) -> list[Event] | None:
        """The events of what only our own devices tell each other about ``peer`` (an
        action, a call-log line, a declined call); None for other contents."""
        if inner.action is not None:
            return self._action(envelope, peer, inner.action.action)
        if inner.call_log is not None:
            return self._call_log(envelope, peer, inner)
        if inner.call is not None:  # another device of ours declined a call: stop ringing
            return [
                CallSignalReceived(
                    peer,
                    self.me,
                    envelope.sender_device_id,
                    inner.call,
                    envelope.server_ms,
                    envelope.envelope_id,
                )
            ]
        return None

    def _call_log(
        self, envelope: IncomingEnvelope, peer: str, inner: payload.Content
    ) -> list[Event]:
        me = (self.me, envelope.sender_device_id)
        line = record_synced_call(self.store, me, peer, inner, self.now_ms)
        if line is None:
            return []
        return [CallLogSynced(peer, envelope.sender_device_id, line, envelope.envelope_id)]

    def _action(self, envelope: IncomingEnvelope, peer: str, action: int) -> list[Event]:
        apply_action(self.store, peer, action, self.now_ms)
        return [
            ConversationChanged(
                peer, ACTION_NAMES[action], envelope.sender_device_id, envelope.envelope_id
            )
        ]


def apply_action(store: DeviceStore, peer: str, action: int, now_ms: int) -> None:
    """What accepting, declining, blocking or unblocking ``peer`` does to the store (on the
    device where the user did it, and on our other devices when the sync copy arrives)."""
    if action == payload.ACTION_ACCEPT:
        store.set_state(peer, "accepted", now_ms)
    elif action == payload.ACTION_DECLINE:
        store.delete_conversation(peer)
    elif action == payload.ACTION_BLOCK:
        store.block(peer, now_ms)
    elif action == payload.ACTION_UNBLOCK:
        store.unblock(peer)
    else:
        raise ContentError("unknown conversation action")
