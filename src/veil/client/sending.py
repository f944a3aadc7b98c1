"""Sending, mixed into :class:`~veil.client.Client` (ARCHITECTURE.md §3).

A message is encrypted to every device of the recipient and, as a sync copy, to the sender's
other devices, and sent as one set; when the server answers that the device list changed, the
client fetches the missing bundles, drops the sessions of removed devices, and sends again
under the same idempotency key. A message that cannot reach the server waits in the outbox.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from veil.client import attachments, convert
from veil.client.errors import ClientError, ServerError, TransportError
from veil.client.parts import ClientPart
from veil.core import content as payload
from veil.core import franking
from veil.core.errors import LocalError, UntrustedIdentityError
from veil.engine import (
    AccountRecord,
    Contact,
    DeviceAdded,
    Event,
    OutboxItem,
    OutgoingCopy,
    PreKeyBundle,
)
from veil.wire.accounts import DeviceInfo
from veil.wire.messages import SendRequest

if TYPE_CHECKING:  # aiortc loads with the first call (see the ``calls`` property)
    pass

log = logging.getLogger("veil.client")

OWN_DEVICES_RECHECK_S: Final = 60.0
"""How often a sending device re-reads its account's device list (for sync copies)."""
MAX_SEND_ATTEMPTS: Final = 4
"""Sends retried after "the device list changed" answers (each fixes what it names)."""


class UntrustedPeerError(ClientError):
    """The peer's identity key changed and strict trust refuses it until verified."""

    def __init__(self, username: str) -> None:
        super().__init__(
            f"the safety number with {username} changed: compare it "
            f"(veil safety-number {username}) and verify it (veil verify {username}) first"
        )
        self.username = username


@dataclass(frozen=True, slots=True)
class SendResult:
    """A message stored by the server for every device of the recipient (and ours)."""

    recipient: str
    message_id: bytes
    server_ms: int
    devices: tuple[tuple[str, int], ...]
    duplicate: bool
    queued: bool = False
    """The server could not be reached: the message waits in this device's outbox and goes
    out with the next send or receive (:meth:`Client.flush_outbox`)."""


class Sending(ClientPart):
    """Sending messages, files, typing notices and receipts; see the module docstring."""

    max_file_bytes: int
    _own_checked: float
    _notices: list[Event]

    if TYPE_CHECKING:

        async def devices(self) -> list[DeviceInfo]: ...
        async def accept(self, who: str) -> None: ...

    async def send(self, who: str, text: str) -> SendResult:
        """Send ``text`` to every device of ``who`` (and a copy to our other devices)."""
        contact = await self.resolve(who)
        return await self._send_message(contact, text=text)

    async def send_file(
        self, who: str, path: str | os.PathLike[str], *, caption: str | None = None
    ) -> SendResult:
        """Send the file at ``path`` (with an optional text ``caption``) to ``who``.

        The file is encrypted here under a new random key and uploaded as an opaque blob;
        the message carries the key, the blob's digest, the size, the base name and a type
        guessed from the name. A file over :attr:`max_file_bytes` is refused (an
        :class:`~veil.client.attachments.AttachmentTooLargeError` naming the limit and the
        size) before it is read or anything is uploaded.
        """
        contact = await self.resolve(who)
        attachments.check_caption(caption)
        pointer = await attachments.upload_file(self._api(), path, self.max_file_bytes, self._rng)
        return await self._send_message(contact, text=caption, attachment=pointer)

    async def _send_message(
        self,
        contact: Contact,
        *,
        text: str | None,
        attachment: payload.AttachmentPointer | None = None,
    ) -> SendResult:
        """Send a new text and/or attachment message (sync copies to our other devices) and
        keep our own copy, ``sent`` or ``failed``."""
        if self.store.is_blocked(contact.account_id):
            raise ClientError(f"you blocked {contact.username}: unblock them to write to them")
        settings = self.store.settings(contact.account_id)
        try:
            message = payload.Content(
                payload.new_message_id(self._rng),
                self._now_ms(),
                text=text,
                attachment=attachment,
                expire_timer_s=settings.timer_s,
            )
            payload.encode_content(message)
        except LocalError as exc:
            raise ClientError(f"cannot send that: {exc}") from None
        if settings.state == "request":  # replying to a message request accepts it
            await self.accept(contact.account_id)
        try:
            if await self.flush_outbox() is None:  # still unreachable: keep the order
                raise TransportError(self.account.server_url, "unreachable")
            result = await self._send_content(contact.account_id, message, sync=True)
        except TransportError:
            return self._queue(contact.account_id, message)
        except UntrustedIdentityError:
            self.engine.record_sent(contact.account_id, message, None, "failed")
            raise UntrustedPeerError(contact.username) from None
        except ClientError:
            self.engine.record_sent(contact.account_id, message, None, "failed")
            raise
        self.engine.record_sent(contact.account_id, message, result.server_ms, "sent")
        return result

    def _queue(self, conversation: str, message: payload.Content) -> SendResult:
        """Keep a message that could not reach the server, to send it later (in order)."""
        with self.store.transaction():
            self.store.enqueue(
                OutboxItem(
                    None,
                    conversation,
                    message.message_id,
                    payload.encode_content(message),
                    self._now_ms(),
                )
            )
        self.engine.record_sent(conversation, message, None, "sending")
        return SendResult(conversation, message.message_id, 0, (), False, queued=True)

    async def flush_outbox(self) -> int | None:
        """Send what waits in the outbox, oldest first; how many went out, or ``None`` if the
        server is still unreachable (the rest stays queued). A message the server refuses
        for good (e.g. the recipient's account is gone) is marked ``failed``."""
        sent = 0
        for item in self.store.outbox():
            assert item.item_id is not None
            message = payload.decode_content(item.content)
            try:
                # The message id is the idempotency key: a send that reached the server
                # before the connection broke is not stored twice.
                result = await self._send_content(item.conversation, message, sync=True)
            except TransportError:
                with self.store.transaction():
                    self.store.bump_outbox(item.item_id)
                return None
            except ClientError as exc:
                log.warning("a queued message could not be sent: %s", exc)
                status, server_ms = "failed", None
            else:
                status, server_ms = "sent", result.server_ms
                sent += 1
            with self.store.transaction():
                self.store.remove_outbox(item.item_id)
            self.engine.record_sent(item.conversation, message, server_ms, status)
        return sent

    async def typing(self, who: str, started: bool = True) -> None:
        """Tell ``who``'s devices that we started (or stopped) typing (not stored)."""
        contact = await self.resolve(who)
        notice = payload.Content(
            payload.new_message_id(self._rng), self._now_ms(), typing=payload.Typing(started)
        )
        await self._send_content(contact.account_id, notice, sync=False)

    async def _bundles(self, account_id: str, device_id: int | None) -> dict[int, PreKeyBundle]:
        answer = await self._api().bundles(account_id, device_id)
        return convert.bundles(answer)

    async def _send_content(
        self,
        recipient: str,
        message: payload.Content,
        *,
        sync: bool,
        restart: dict[int, PreKeyBundle] | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Encrypt ``message`` for every device of ``recipient`` (and, with ``sync``, a copy
        for our other devices) and send it as one set. ``restart``: bundles of recipient
        devices to start a new session with even if one exists (the old one is archived, so
        its late messages still decrypt)."""
        me = self.account
        body = franking.frank(payload.encode_content(message), self._rng)
        sync_body = None
        if sync and recipient != me.account_id:
            copy = payload.Content(
                message.message_id,
                message.sent_ms,
                sync=payload.SyncSent(recipient, payload.encode_content(message, for_sync=True)),
            )
            sync_body = franking.frank(payload.encode_content(copy), self._rng)
        own = me if recipient == me.account_id else None
        fresh: dict[str, dict[int, PreKeyBundle]] = _DefaultDict()
        if own is not None:  # to our other devices only: never fetch (and use up) our own keys
            fresh[recipient] = await self._own_new_devices(recheck=True)
        elif not self.engine.devices_with_sessions(recipient):
            fresh[recipient] = await self._bundles(recipient, None)
        fresh[recipient] = {**fresh[recipient], **(restart or {})}
        if sync_body is not None:
            fresh[me.account_id] = await self._own_new_devices()
        key = idempotency_key or message.message_id.hex()
        for _ in range(MAX_SEND_ATTEMPTS):
            copies = self._encrypt(recipient, body.plaintext, fresh[recipient], skip=own)
            envelopes = [convert.outgoing(c, recipient, body.tag) for c in copies]
            if sync_body is not None:
                copies = self._encrypt(me.account_id, sync_body.plaintext, fresh[me.account_id], me)
                envelopes += [convert.outgoing(c, recipient, sync_body.tag) for c in copies]
            try:
                answer = await self._api().send(recipient, SendRequest(envelopes, key))
            except ServerError as exc:
                if exc.code != "device_mismatch":
                    raise
                fresh = await self._fix_devices(exc)
                continue
            return SendResult(
                recipient,
                message.message_id,
                answer.server_ms,
                tuple((e.account_id, e.device_id) for e in answer.envelopes),
                answer.duplicate,
            )
        raise ClientError("the recipient's devices kept changing; try again")

    async def _own_new_devices(self, *, recheck: bool = False) -> dict[int, PreKeyBundle]:
        """Bundles of our other devices we have no session with yet. The server checks our
        own device list only when a send includes copies for it, so a device learns of a
        newly linked sibling here (at most once a minute, or now with ``recheck``) rather
        than from a refusal."""
        now = time.monotonic()
        if not recheck and now - self._own_checked < OWN_DEVICES_RECHECK_S:
            return {}
        me = self.account
        devices = await self.devices()
        listed = {d.device_id for d in devices} - {me.device_id}
        self._own_checked = now
        known = set(self.engine.devices_with_sessions(me.account_id))
        gone = sorted(known - listed)
        if gone:
            self.engine.forget_devices(me.account_id, gone)
        bundles: dict[int, PreKeyBundle] = {}
        for device_id in sorted(listed - known):
            bundles.update(await self._bundles(me.account_id, device_id))
        self._notices += [
            DeviceAdded(me.account_id, d.device_id)
            for d in devices
            if d.device_id in listed - known and d.created_ms > me.created_ms
        ]
        return bundles

    def _encrypt(
        self,
        account_id: str,
        body: bytes,
        bundles: dict[int, PreKeyBundle],
        skip: AccountRecord | None = None,
    ) -> list[OutgoingCopy]:
        devices = sorted(set(self.engine.devices_with_sessions(account_id)) | set(bundles))
        if skip is not None:
            devices = [d for d in devices if d != skip.device_id]
        copies, changed = self.engine.encrypt(account_id, devices, payload.pad(body), bundles)
        for event in changed:
            log.warning("identity key of %s changed (accepted: trust on first use)", event)
        return copies

    async def _fix_devices(self, exc: ServerError) -> dict[str, dict[int, PreKeyBundle]]:
        """Act on a ``device_mismatch``: forget removed devices, fetch new ones' bundles."""
        fresh: dict[str, dict[int, PreKeyBundle]] = {}
        mismatches = exc.details.get("mismatches", [])
        for m in mismatches if isinstance(mismatches, list) else []:
            account_id = str(m["account_id"])
            if self.engine.devices_with_sessions(account_id):
                self._notices += [DeviceAdded(account_id, int(d)) for d in m.get("missing", [])]
            gone = [int(d) for d in m.get("extra", [])] + [int(d) for d in m.get("stale", [])]
            self.engine.forget_devices(account_id, gone)
            wanted = [int(d) for d in m.get("missing", [])] + [int(d) for d in m.get("stale", [])]
            bundles: dict[int, PreKeyBundle] = {}
            for device_id in wanted:
                bundles.update(await self._bundles(account_id, device_id))
            fresh[account_id] = bundles
        return _DefaultDict(fresh)

    async def _send_receipt(self, to: str, kind: int, message_ids: Sequence[bytes]) -> None:
        receipt = payload.Content(
            payload.new_message_id(self._rng),
            self._now_ms(),
            receipt=payload.Receipt(kind, tuple(message_ids)),
        )
        try:
            await self._send_content(to, receipt, sync=False)
        except ClientError as exc:
            log.info("receipt not sent: %s", exc)


class _DefaultDict(dict[str, dict[int, PreKeyBundle]]):
    """Bundles by account; an account not named has none to start with."""

    def __missing__(self, key: str) -> dict[int, PreKeyBundle]:
        return {}
