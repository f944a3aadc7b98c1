"""The conversation rules on the SDK (ARCHITECTURE.md §1), mixed into :class:`Client`:
disappearing-message timers, follows, message requests, blocking and franked reports.

Where the server holds the truth (follows, accepted chats, blocks), the call goes to the
server first and the local store follows; our other devices hear of accept / decline / block /
unblock through an end-to-end encrypted sync copy (``ConversationAction``), so all of them
agree without the server learning more than its own lists. (:meth:`ConversationRules.
tell_own_devices` sends such sync-only contents; the call layer uses it for call-log lines.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

from veil.client.errors import ClientError, ServerError
from veil.client.parts import ClientPart
from veil.core import content as payload
from veil.core.errors import DecodeError, LocalError
from veil.engine import Contact, ConversationSummary, MessageRecord
from veil.engine.evidence import Evidence
from veil.engine.incoming import apply_action
from veil.wire.reports import ReportedMessage, ReportRequest, ReportResponse
from veil.wire.social import Relationship

if TYPE_CHECKING:
    pass

log = logging.getLogger("veil.client")

EXPIRY_POLL_S: Final = 1.0
"""Longest sleep of the background expiry loop (a message disappears at most this late)."""
DEFAULT_REPORTED: Final = 5
"""``report`` without message ids reveals this many of the peer's latest messages."""


class ConversationRules(ClientPart):
    """Timers, follows, requests, blocks, reports; see the module docstring."""

    if TYPE_CHECKING:

        async def _send_content(
            self, recipient: str, message: payload.Content, *, sync: bool
        ) -> Any: ...
        def _spawn(self, work: Coroutine[Any, Any, None]) -> None: ...

    def now_ms(self) -> int:
        """The client's clock (injected for tests), in milliseconds."""
        return self._now_ms()

    # --- disappearing messages ------------------------------------------------------------
    def timer(self, conversation: str) -> int:
        """The conversation's disappearing-message timer in seconds (0: off)."""
        return self.store.settings(conversation).timer_s

    async def set_timer(self, who: str, seconds: int) -> None:
        """Set the disappearing-message timer with ``who`` (0: off; else 5 s to 24 h). New
        messages carry it; earlier ones keep theirs. The change is an E2EE message shown in
        the conversation on every device of both people."""
        problem = payload.timer_problem(seconds)
        if problem is not None:
            raise ClientError(problem)
        contact = await self.resolve(who)
        notice = payload.Content(
            payload.new_message_id(self._rng),
            self._now_ms(),
            timer=payload.TimerUpdate(seconds),
        )
        result = await self._send_content(contact.account_id, notice, sync=True)
        self.engine.record_sent(contact.account_id, notice, result.server_ms, "sent")

    def expire(self) -> int:
        """Delete every message whose disappearing timer ran out (by the injected clock),
        with its downloaded attachment; how many. Runs when the client opens and, while
        :meth:`events` runs, in the background."""
        return self.store.expire(self._now_ms())

    async def _expire_forever(self) -> None:
        while True:
            try:
                self.expire()
                upcoming = self.store.next_expiry()
            except Exception as exc:  # a closed store: the client is going away
                log.debug("expiry loop stops: %s", type(exc).__name__)
                return
            wait = EXPIRY_POLL_S
            if upcoming is not None:
                wait = min(wait, max(0.05, (upcoming - self._now_ms()) / 1000))
            await asyncio.sleep(wait)

    # --- follows --------------------------------------------------------------------------
    async def follow(self, who: str) -> Relationship:
        """Follow ``who``; with a follow back, either may start a chat with the other."""
        contact = await self.resolve(who)
        await self._api().relation("PUT", "follows", contact.account_id)
        return await self._api().relationship(contact.account_id)

    async def unfollow(self, who: str) -> None:
        """Stop following ``who``."""
        contact = await self.resolve(who)
        await self._api().relation("DELETE", "follows", contact.account_id)

    async def following(self) -> list[Contact]:
        """Accounts we follow."""
        return await self._listed("follows")

    async def followers(self) -> list[Contact]:
        """Accounts that follow us."""
        return await self._listed("followers")

    async def relationship(self, who: str) -> Relationship:
        """Follows, acceptance and block between us and ``who``, as the server has them."""
        contact = await self.resolve(who)
        return await self._api().relationship(contact.account_id)

    async def _listed(self, kind: str) -> list[Contact]:
        answer = await self._api().account_list(kind)
        contacts = [Contact(a.account_id, a.username) for a in answer.accounts]
        with self.store.transaction():
            for contact in contacts:
                self.store.save_contact(contact)
        return contacts

    # --- message requests -----------------------------------------------------------------
    def requests(self) -> list[ConversationSummary]:
        """Conversations waiting in message requests, newest first."""
        return self.store.conversations(state="request")

    async def accept(self, who: str) -> None:
        """Accept ``who``'s message request: their messages reach the inbox from now on, and
        receipts flow again."""
        await self._act(who, "chats", "PUT", payload.ACTION_ACCEPT)

    async def decline(self, who: str) -> None:
        """Decline ``who``'s message request: the conversation is deleted from every device
        of ours; they are not told (a new message from them is a new request)."""
        await self._act(who, "chats", "DELETE", payload.ACTION_DECLINE)

    # --- blocking -------------------------------------------------------------------------
    async def block(self, who: str) -> None:
        """Block ``who``: the server stores nothing they send us (they are not told) and
        every device of ours drops whatever still arrives from them."""
        await self._act(who, "blocks", "PUT", payload.ACTION_BLOCK)

    async def unblock(self, who: str) -> None:
        """Unblock ``who``."""
        await self._act(who, "blocks", "DELETE", payload.ACTION_UNBLOCK)

    async def blocked(self) -> list[Contact]:
        """Accounts we block (the server's list; the local copy is brought in line)."""
        contacts = await self._listed("blocks")
        self.store.replace_blocked([c.account_id for c in contacts], self._now_ms())
        return contacts

    async def _act(self, who: str, kind: str, method: str, action: int) -> None:
        contact = await self.resolve(who)
        peer = contact.account_id
        if peer == self.account.account_id:
            raise ClientError("that is this account")
        await self._api().relation(method, kind, peer)
        with self.store.transaction():
            apply_action(self.store, peer, action, self._now_ms())
        await self._sync_action(peer, action)

    async def _sync_action(self, peer: str, action: int) -> None:
        """Tell our other devices (if any) what we did with ``peer``."""
        inner = payload.Content(
            payload.new_message_id(self._rng),
            self._now_ms(),
            action=payload.ConversationAction(action),
        )
        try:
            await self.tell_own_devices(peer, inner)
        except ClientError as exc:  # the server state is already right; they catch up
            log.warning("could not tell our other devices: %s", exc)

    async def tell_own_devices(self, peer: str, inner: payload.Content) -> None:
        """Send ``inner`` (a sync-only content about ``peer``: a conversation action, a
        call-log line) to our other devices in a sync copy; nothing if there are none."""
        copy = payload.Content(
            inner.message_id,
            inner.sent_ms,
            sync=payload.SyncSent(peer, payload.encode_content(inner, for_sync=True)),
        )
        me = self.account
        devices = await self._api().devices()
        if not any(d.device_id != me.device_id for d in devices.devices):
            return  # no other device to tell
        await self._send_content(me.account_id, copy, sync=False)

    # --- reports --------------------------------------------------------------------------
    async def report(
        self,
        who: str,
        message_ids: Sequence[bytes] = (),
        *,
        reason: str = "",
        last: int = DEFAULT_REPORTED,
    ) -> ReportResponse:
        """Report ``who`` to the server's operator, revealing the chosen received messages
        (default: their ``last`` latest). The server verifies each against its franking
        tags; nothing else of the conversation is revealed."""
        contact = await self.resolve(who)
        peer = contact.account_id
        if message_ids:
            records = []
            for message_id in message_ids:
                record = self.store.message(peer, message_id)
                if record is None:
                    raise ClientError(
                        f"no message {message_id.hex()[:12]} from {contact.username}"
                        " (it may have disappeared)"
                    )
                records.append(record)
        else:
            records = [
                m
                for m in self.store.messages(peer, limit=500)
                if m.direction == "in" and m.kind == "message"
            ][-last:]
        if not records:
            raise ClientError(f"there is no message from {contact.username} to report")
        revealed = [self._reveal(record) for record in records]
        try:
            return await self._api().report(ReportRequest(peer, revealed, reason))
        except ServerError as exc:
            raise ClientError(f"the report was refused: {exc}") from None

    def _reveal(self, record: MessageRecord) -> ReportedMessage:
        if record.direction != "in" or record.franking is None or record.server_ms is None:
            raise ClientError("only messages received from the reported person can be reported")
        try:
            evidence = Evidence.decode(record.franking)
        except DecodeError:
            raise ClientError("this message's report evidence is damaged") from None
        if not evidence.reporting_tag:
            raise ClientError("the server gave no reporting tag with this message")
        try:
            return ReportedMessage(
                evidence.content,
                evidence.franking_key,
                evidence.reporting_tag,
                evidence.key_id,
                record.sender_device_id,
                evidence.recipient_device_id,
                record.server_ms,
            )
        except LocalError as exc:  # pragma: no cover - msgspec Structs do not validate here
            raise ClientError(str(exc)) from None
