"""The public async SDK: :class:`Client`.

A client is one device profile (a folder with its store) talking to one server. It does the
network I/O and leaves the protocol to :mod:`veil.engine`::

    async with await Client.register("~/.veil/alice", "http://127.0.0.1:8080", "alice") as alice:
        await alice.send("bob", "hello")
    async with Client("~/.veil/bob") as bob:
        async for event in bob.events():
            print(event)

Sending (ARCHITECTURE.md §3): the message is encrypted to every device of the recipient and,
as a sync copy, to the sender's other devices, and sent as one set; when the server answers
that the device list changed, the client fetches the missing bundles, drops the sessions of
removed devices, and sends again under the same idempotency key. Receiving: each envelope is
decrypted and stored by the engine in one transaction, then acked; a delivery receipt goes
back to the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from veil.client import attachments, convert
from veil.client.calls_call import Call, IncomingCall
from veil.client.closing import AsyncClosing
from veil.client.connection import Connection
from veil.client.credentials import Credentials
from veil.client.errors import ClientError, ServerError, TransportError
from veil.client.http import HttpApi
from veil.client.rules import ConversationRules
from veil.core import content as payload
from veil.core import franking
from veil.core.errors import LocalError, UntrustedIdentityError, VeilError
from veil.core.rng import Rng
from veil.engine import (
    AccountRecord,
    CallSignalReceived,
    Contact,
    ConversationSummary,
    DecryptFailure,
    DeviceAdded,
    DeviceStore,
    Engine,
    Event,
    Fingerprint,
    IdentityChanged,
    MessageReceived,
    MessageRecord,
    OutboxItem,
    OutgoingCopy,
    PreKeyBundle,
    SessionReset,
    TrustMode,
    linking,
    new_account_keys,
)
from veil.engine.keys import new_identity, new_registration_id
from veil.wire.accounts import DeviceInfo, RegisterRequest
from veil.wire.messages import Deliver, KeysLow, QueueEmpty, SendRequest
from veil.wire.provisioning import LinkRequest

if TYPE_CHECKING:  # aiortc loads with the first call (see the ``calls`` property)
    from aiortc.mediastreams import MediaStreamTrack

    from veil.client.calls import CallManager

log = logging.getLogger("veil.client")

OWN_DEVICES_RECHECK_S: Final = 60.0
"""How often a sending device re-reads its account's device list (for sync copies)."""
MAX_SEND_ATTEMPTS: Final = 4
RESETTABLE: Final = frozenset({"no_session", "bad_mac", "invalid_prekey", "too_far_ahead"})
"""Failures a new session can cure (not e.g. a bad content, or an untrusted identity)."""
RESET_INTERVAL_S: Final = 300.0
"""At most one automatic reset per peer device in this long (no reset storms)."""
RESEND_WINDOW_MS: Final = 24 * 3600 * 1000
"""After a peer's reset, our unconfirmed messages of this period are sent again."""
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
class CaughtUp:
    """Everything the server held for this device when it connected has been processed."""


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


ClientEvent = Event | CaughtUp | IncomingCall


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _wait_mailbox(api: HttpApi, provisioning_id: str, token: str, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wait = int(max(1, min(30, deadline - time.monotonic())))
        sealed = await api.wait_mailbox(provisioning_id, token, wait)
        if sealed is not None:
            return sealed
    raise ClientError("the link was not approved in time; start again")


class Client(ConversationRules, AsyncClosing):
    """One device profile. Use as ``async with``; :meth:`register` or :meth:`link` first."""

    max_file_bytes: int = attachments.MAX_FILE_BYTES
    """Largest attachment this client sends or downloads (default 100 MiB, the server's)."""

    def __init__(
        self,
        profile: str | os.PathLike[str],
        *,
        trust: TrustMode = "tofu",
        rng: Rng = os.urandom,
        now_ms: Callable[[], int] = _now_ms,
        server_url: str | None = None,
    ) -> None:
        self.profile = Path(profile).expanduser()
        self._trust: TrustMode = trust
        self._rng = rng
        self._now_ms = now_ms
        self._server_url = server_url
        self._store: DeviceStore | None = None
        self._engine: Engine | None = None
        self._http: HttpApi | None = None
        self._connection: Connection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._own_checked = -OWN_DEVICES_RECHECK_S
        self._resets: dict[tuple[str, int], float] = {}
        self._notices: list[Event] = []  # learned while sending; given out by events()
        self._calls: CallManager | None = None

    @property
    def calls(self) -> CallManager:
        """This device's calls (:mod:`veil.client.calls`). Created on first use, which loads
        aiortc and PyAV: a client that never calls (or is called) never imports them."""
        if self._calls is None:
            from veil.client.calls import CallManager  # noqa: PLC0415 - see above

            self._calls = CallManager(self)
        return self._calls

    # --- life cycle -----------------------------------------------------------------------
    def _enter(self) -> None:
        self.open()

    @staticmethod
    def profile_exists(profile: str | os.PathLike[str]) -> bool:
        """Whether ``profile`` holds a device (a store), without creating anything."""
        return DeviceStore.exists(Path(profile).expanduser())

    def open(self) -> None:
        """Open the profile's store (created if missing) and delete the messages whose
        disappearing timer ran out while the client was not running."""
        if self._store is None:
            self._store = DeviceStore.open(self.profile)
            self._engine = Engine(
                self._store, rng=self._rng, now_ms=self._now_ms, trust=self._trust
            )
            self.expire()

    async def settle(self) -> None:
        """Wait for the background work started so far (receipts, prekey uploads)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Hang up, finish background work, close the connection and the store."""
        if self._calls is not None:
            await self._calls.close()
        await self.settle()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._store is not None:
            self._store.close()
            self._store = None
            self._engine = None

    @property
    def store(self) -> DeviceStore:
        if self._store is None:
            raise ClientError("the client is not open (use `async with`)")
        return self._store

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise ClientError("the client is not open (use `async with`)")
        return self._engine

    @property
    def account(self) -> AccountRecord:
        """This device's account (:class:`ClientError` if the profile has none)."""
        account = self.store.account()
        if account is None:
            raise ClientError(f"no account in {self.profile}: run register or link first")
        return account

    @property
    def credentials(self) -> Credentials:
        """How this device authenticates to its server."""
        account = self.account
        return Credentials(account.account_id, account.device_id, account.credential)

    def _api(self) -> HttpApi:
        if self._http is None:
            self._http = HttpApi(self.account.server_url, self.credentials)
        return self._http

    # --- registration ---------------------------------------------------------------------
    @classmethod
    async def register(
        cls,
        profile: str | os.PathLike[str],
        server_url: str,
        username: str,
        *,
        device_name: str = "",
        trust: TrustMode = "tofu",
        rng: Rng = os.urandom,
    ) -> Client:
        """Create an account on ``server_url`` with this profile as its primary device."""
        client = cls(profile, trust=trust, rng=rng)
        client.open()
        try:
            if client.store.account() is not None:
                raise ClientError(f"{client.profile} already holds an account")
            identity, registration_id = new_identity(rng)
            async with HttpApi(server_url) as anonymous:
                answer = await anonymous.register(
                    RegisterRequest(
                        username, identity.public_key.serialize(), registration_id, device_name
                    )
                )
            now = client._now_ms()
            with client.store.transaction():
                client.store.save_account(
                    AccountRecord(
                        server_url=server_url,
                        account_id=answer.account_id,
                        device_id=answer.device_id,
                        credential=answer.credential,
                        username=username,
                        identity_private=identity.secret_bytes(),
                        registration_id=registration_id,
                        created_ms=now,
                    )
                )
                batch = new_account_keys(client.store, identity, rng, now)
            await client._api().upload_keys(convert.key_upload(batch))
        except BaseException:
            await client.close()
            raise
        return client

    @classmethod
    async def link(
        cls,
        profile: str | os.PathLike[str],
        server_url: str,
        *,
        device_name: str = "",
        show: Callable[[str], None] = print,
        timeout_s: float = 600.0,
        trust: TrustMode = "tofu",
        rng: Rng = os.urandom,
    ) -> Client:
        """Link this profile as a new device of an existing account.

        ``show`` is given the ``veil-link:...`` text to approve on an existing device
        (:meth:`approve_link`, or ``veil devices approve``); this waits until it is approved
        (or ``timeout_s``), then publishes this device's keys.
        """
        client = cls(profile, trust=trust, rng=rng)
        client.open()
        try:
            if client.store.account() is not None:
                raise ClientError(f"{client.profile} already holds an account")
            async with HttpApi(server_url) as anonymous:
                mailbox = await anonymous.open_mailbox()
                pending = linking.start_link(mailbox.provisioning_id, rng)
                show(pending.uri)
                sealed = await _wait_mailbox(
                    anonymous, mailbox.provisioning_id, mailbox.token, timeout_s
                )
                try:
                    invite = linking.open_invite(pending, sealed)
                except VeilError as exc:
                    raise ClientError(f"the link message is not valid: {exc}") from None
                registration_id = new_registration_id(rng)
                answer = await anonymous.link(
                    LinkRequest(invite.account_id, invite.code, registration_id, device_name)
                )
            batch = linking.finish_link(
                client.store,
                invite,
                server_url=server_url,
                device_id=answer.device_id,
                credential=answer.credential,
                registration_id=registration_id,
                rng=rng,
                now_ms=client._now_ms(),
            )
            await client._api().upload_keys(convert.key_upload(batch))
        except BaseException:
            await client.close()
            raise
        return client

    async def approve_link(self, uri: str) -> None:
        """Approve a new device that shows ``uri``: it gets this account's identity and
        contacts, sealed so that the server cannot read them."""
        code = await self._api().provisioning_code()
        try:
            provisioning_id, sealed = linking.seal_invite(self.store, uri, code.code, self._rng)
        except VeilError as exc:
            raise ClientError(f"that is not a link code: {exc}") from None
        await self._api().put_mailbox(provisioning_id, sealed)

    async def replenish_keys(self, *, everything: bool = False) -> None:
        """Upload a new batch of one-time prekeys (the server said they run low); with
        ``everything`` a whole new set (the server holds none: an earlier upload failed)."""
        batch = self.engine.more_prekeys(everything=everything)
        await self._api().upload_keys(convert.key_upload(batch))

    async def _replenish(self, *, everything: bool) -> None:
        try:
            await self.replenish_keys(everything=everything)
        except ClientError as exc:  # the server asks again on the next connection
            log.warning("could not upload prekeys: %s", exc)

    # --- people ---------------------------------------------------------------------------
    async def resolve(self, who: str) -> Contact:
        """A username (or an account id we know) as a contact; looked up on the server the
        first time, and remembered."""
        known = self.store.contact_by_username(who) or self.store.contact(who)
        if known is not None:
            return known
        info = await self._api().lookup(who)
        contact = Contact(info.account_id, info.username)
        with self.store.transaction():
            self.store.save_contact(contact)
        return contact

    def username_of(self, account_id: str) -> str | None:
        """The username we know for an account id."""
        if account_id == self.account.account_id:
            return self.account.username
        contact = self.store.contact(account_id)
        return None if contact is None else contact.username

    async def safety_number(self, who: str) -> Fingerprint:
        """The safety number with ``who`` (their key is fetched if we never saw it)."""
        contact = await self.resolve(who)
        if self.engine.identity(contact.account_id) is None:
            await self._bundles(contact.account_id, None)
        return self.engine.safety_number(contact.account_id)

    async def verify(self, who: str) -> None:
        """Mark ``who``'s current identity key as verified (after comparing safety numbers)."""
        contact = await self.resolve(who)
        self.engine.verify(contact.account_id)

    # --- devices --------------------------------------------------------------------------
    async def devices(self) -> list[DeviceInfo]:
        """This account's devices."""
        return list((await self._api().devices()).devices)

    async def remove_device(self, device_id: int) -> None:
        """Remove a linked device (the primary may remove any; a device itself)."""
        await self._api().remove_device(device_id)

    # --- sending --------------------------------------------------------------------------
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

    async def call(
        self,
        who: str,
        *,
        audio: bool = True,
        video: bool = False,
        audio_source: MediaStreamTrack | None = None,
        video_source: MediaStreamTrack | None = None,
    ) -> Call:
        """Call ``who``'s devices (:mod:`veil.client.calls`); keep reading :meth:`events`."""
        return await self.calls.call(
            who, audio=audio, video=video, audio_source=audio_source, video_source=video_source
        )

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

    # --- receiving ------------------------------------------------------------------------
    async def events(self) -> AsyncGenerator[ClientEvent, None]:
        """Connect and yield events as envelopes arrive (forever; break to stop).

        Each envelope is stored before it is acked; a :class:`CaughtUp` event follows the
        backlog that was waiting.
        """
        connection = self._connection = Connection(self.account.server_url, self.credentials)
        expiry = asyncio.ensure_future(self._expire_forever())
        try:
            with contextlib.suppress(ClientError):
                await self.flush_outbox()
            with contextlib.suppress(ClientError):
                await self.blocked()  # the server's list is the truth
            while self._notices:
                yield self._notices.pop(0)
            async for frame in connection.frames():
                while self._notices:
                    yield self._notices.pop(0)
                if isinstance(frame, Deliver):
                    events: list[Event] = []
                    for envelope in frame.envelopes:
                        events += self.engine.handle(convert.incoming(envelope))
                    await connection.ack([e.envelope_id for e in frame.envelopes])
                    for event in events:
                        await self._learn(event)
                        self._after(event)
                        yield event
                        for incoming in self._take_incoming():
                            yield incoming
                        recovered = await self._recover(event)
                        if recovered is not None:
                            yield recovered
                elif isinstance(frame, QueueEmpty):
                    yield CaughtUp()
                elif isinstance(frame, KeysLow):
                    empty = frame.one_time_prekeys == 0 and frame.kyber_prekeys == 0
                    self._spawn(self._replenish(everything=empty))
        finally:
            expiry.cancel()
            await connection.close()
            if self._connection is connection:
                self._connection = None

    def _take_incoming(self) -> list[IncomingCall]:
        """Calls that began ringing (none if call support never started)."""
        return [] if self._calls is None else self._calls.take_incoming()

    async def receive(self, timeout: float = 0.0) -> list[ClientEvent]:
        """Everything queued, then whatever comes within ``timeout`` seconds of quiet."""
        out: list[ClientEvent] = []
        stream = self.events()
        caught_up = False
        try:
            while True:
                wait = timeout if caught_up else max(timeout, 30.0)
                try:
                    event = await asyncio.wait_for(anext(stream), wait)
                except (TimeoutError, StopAsyncIteration):
                    break
                if isinstance(event, CaughtUp):
                    caught_up = True
                    if timeout <= 0:
                        break
                    continue
                out.append(event)
        finally:
            await stream.aclose()
        return out

    async def _recover(self, event: Event) -> SessionReset | None:
        """Recover from a broken session, automatically (the product's "unable to decrypt"
        path): when a device's message cannot be read, drop our session with it and send it a
        reset from a fresh bundle; when a peer device says it could not read ours, send our
        recent unconfirmed messages again (readers drop duplicates by message id)."""
        if isinstance(event, DecryptFailure) and event.reason in RESETTABLE:
            key = (event.sender_account_id, event.sender_device_id)
            now = time.monotonic()
            if now - self._resets.get(key, -RESET_INTERVAL_S) < RESET_INTERVAL_S:
                return None
            self._resets[key] = now
            try:
                restart = await self._bundles(key[0], key[1])
            except ClientError as exc:  # e.g. the device is gone: nothing to reset
                log.info("no bundle to reset a broken session: %s", exc)
                return None
            reset = payload.Content(
                payload.new_message_id(self._rng),
                self._now_ms(),
                reset=payload.SessionReset(key[1]),
            )
            try:
                await self._send_content(key[0], reset, sync=False, restart=restart)
            except ClientError as exc:
                log.warning("could not reset a broken session: %s", exc)
                return None
            return SessionReset(key[0], key[1], True, event.envelope_id)
        if isinstance(event, SessionReset) and not event.by_us:
            since = self._now_ms() - RESEND_WINDOW_MS
            for message in self.engine.unconfirmed(event.account_id, since):
                attachment = None
                if message.attachment is not None:
                    attachment = payload.decode_content(message.attachment).attachment
                again = payload.Content(
                    message.message_id,
                    message.sent_ms,
                    text=message.text,
                    attachment=attachment,
                    expire_timer_s=message.expire_timer_s,
                )
                resend_key = f"{message.message_id.hex()}.resend.{event.envelope_id}"
                try:
                    await self._send_content(
                        event.account_id, again, sync=False, idempotency_key=resend_key
                    )
                except ClientError as exc:
                    log.warning("could not resend after a session reset: %s", exc)
                    break
        return None

    async def _learn(self, event: Event) -> None:
        """Remember the username of a sender we did not know (for display)."""
        if not isinstance(event, MessageReceived) or self.store.contact(event.conversation):
            return
        try:
            info = await self._api().account(event.conversation)
        except ClientError as exc:  # shown by account id meanwhile
            log.info("cannot look up a sender: %s", exc)
            return
        with self.store.transaction():
            self.store.save_contact(Contact(info.account_id, info.username))

    def _after(self, event: Event) -> None:
        if isinstance(event, MessageReceived) and not event.request:
            self._spawn(
                self._send_receipt(
                    event.conversation, payload.RECEIPT_DELIVERED, [event.message_id]
                )
            )
        elif isinstance(event, IdentityChanged):
            log.warning("the identity key of %s changed", event.account_id)
        elif isinstance(event, CallSignalReceived):
            self.calls.on_signal(event)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- reading --------------------------------------------------------------------------
    async def download(self, message: attachments.Message) -> Path:
        """Download, verify and save the attachment of ``message``; the saved file's path.

        The blob is fetched (never more bytes than its size allows), its digest, MAC and size
        are checked, and only then is the file written, ``0600``, under the profile's
        ``attachments/`` folder with a safe name of our own (the sender's name is only a
        hint) that never replaces another file. The path is recorded with the message; a
        message already downloaded returns its file. A blob that fails verification raises
        :class:`~veil.client.attachments.AttachmentInvalidError` and nothing is written.
        """
        pointer = attachments.pointer_of(message)
        if pointer is None:
            raise ClientError("that message has no attachment")
        store = self.store
        stored = store.message(message.conversation, message.message_id)
        if stored is not None and stored.attachment_path is not None:
            saved = store.profile / stored.attachment_path
            if saved.is_file():
                return saved
        data = await attachments.fetch(self._api(), pointer, self.max_file_bytes)
        folder = store.attachments_dir
        path = await asyncio.to_thread(attachments.save_private, folder, pointer.file_name, data)
        relative = path.relative_to(store.profile).as_posix()
        store.set_attachment_path(message.conversation, message.message_id, relative)
        return path

    def conversations(self) -> list[ConversationSummary]:
        """Conversations, newest activity first."""
        return self.store.conversations()

    def messages(self, conversation: str, limit: int = 100) -> list[MessageRecord]:
        """One conversation's messages, oldest first."""
        return self.store.messages(conversation, limit)

    async def mark_read(self, conversation: str) -> int:
        """Mark the conversation's incoming messages read (their disappearing timers start
        now) and tell the sender -- unless the conversation is a message request."""
        ids = self.store.mark_read(conversation, self._now_ms())
        if self.store.settings(conversation).state == "request":
            return len(ids)
        step = payload.MAX_RECEIPT_IDS
        for start in range(0, len(ids), step):  # a receipt names at most 1000 messages
            await self._send_receipt(conversation, payload.RECEIPT_READ, ids[start : start + step])
        return len(ids)


class _DefaultDict(dict[str, dict[int, PreKeyBundle]]):
    """Bundles by account; an account not named has none to start with."""

    def __missing__(self, key: str) -> dict[int, PreKeyBundle]:
        return {}
