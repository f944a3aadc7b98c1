"""The public async SDK: :class:`Client`.

A client is one device profile (a folder with its store) talking to one server. It does the
network I/O and leaves the protocol to :mod:`veil.engine`::

    async with await Client.register("~/.veil/alice", "http://127.0.0.1:8080", "alice") as alice:
        await alice.send("bob", "hello")
    async with Client("~/.veil/bob") as bob:
        async for event in bob.events():
            print(event)

The class is put together from parts, each in its own module: sending
(:mod:`veil.client.sending`, ARCHITECTURE.md §3: every device of the recipient and, as sync
copies, our other devices, retried when the device list changed), receiving
(:mod:`veil.client.receiving`: the events stream, acks, receipts, session recovery), the
conversation rules (:mod:`veil.client.rules`) and calls (:attr:`Client.calls`). This module
holds the life cycle, registration and linking, people, devices and reading.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from veil.client import attachments, convert
from veil.client.calls_call import Call
from veil.client.closing import AsyncClosing
from veil.client.connection import Connection
from veil.client.credentials import Credentials
from veil.client.errors import ClientError
from veil.client.http import HttpApi
from veil.client.receiving import CaughtUp, ClientEvent, Receiving
from veil.client.rules import ConversationRules
from veil.client.sending import OWN_DEVICES_RECHECK_S, SendResult, UntrustedPeerError
from veil.core import content as payload
from veil.core.errors import VeilError
from veil.core.rng import Rng
from veil.engine import (
    AccountRecord,
    Contact,
    ConversationSummary,
    DeviceStore,
    Engine,
    Event,
    Fingerprint,
    MessageRecord,
    TrustMode,
    linking,
    new_account_keys,
)
from veil.engine.keys import new_identity, new_registration_id
from veil.wire.accounts import DeviceInfo, RegisterRequest
from veil.wire.provisioning import LinkRequest

if TYPE_CHECKING:  # aiortc loads with the first call (see the ``calls`` property)
    from aiortc.mediastreams import MediaStreamTrack

    from veil.client.calls import CallManager

__all__ = ["CaughtUp", "Client", "ClientEvent", "SendResult", "UntrustedPeerError"]

log = logging.getLogger("veil.client")


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


class Client(Receiving, ConversationRules, AsyncClosing):
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
