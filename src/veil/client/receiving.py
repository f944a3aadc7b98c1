"""Receiving, mixed into :class:`~veil.client.Client`: the events stream.

Each envelope is decrypted and stored by the engine in one transaction, then acked; a delivery
receipt goes back to the sender. A session that breaks is recovered automatically (a reset
from a fresh bundle, and our unconfirmed messages sent again when the peer could not read
them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from veil.client import convert
from veil.client.calls_call import IncomingCall
from veil.client.connection import Connection
from veil.client.credentials import Credentials
from veil.client.errors import ClientError
from veil.client.sending import Sending
from veil.core import content as payload
from veil.engine import (
    CallSignalReceived,
    Contact,
    DecryptFailure,
    Event,
    IdentityChanged,
    MessageReceived,
    SessionReset,
)
from veil.wire.messages import Deliver, KeysLow, QueueEmpty

if TYPE_CHECKING:  # aiortc loads with the first call (see the ``calls`` property)
    from veil.client.calls import CallManager

log = logging.getLogger("veil.client")

RESETTABLE: Final = frozenset({"no_session", "bad_mac", "invalid_prekey", "too_far_ahead"})
"""Failures a new session can cure (not e.g. a bad content, or an untrusted identity)."""
RESET_INTERVAL_S: Final = 300.0
"""At most one automatic reset per peer device in this long (no reset storms)."""
RESEND_WINDOW_MS: Final = 24 * 3600 * 1000
"""After a peer's reset, our unconfirmed messages of this period are sent again."""


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Everything the server held for this device when it connected has been processed."""


ClientEvent = Event | CaughtUp | IncomingCall


class Receiving(Sending):
    """The events stream and what happens after each event; see the module docstring. Built
    on :class:`~veil.client.sending.Sending`: receipts, resets and resends go out from here."""

    _tasks: set[asyncio.Task[None]]
    _resets: dict[tuple[str, int], float]
    _notices: list[Event]
    _connection: Connection | None
    _calls: CallManager | None

    if TYPE_CHECKING:

        @property
        def credentials(self) -> Credentials: ...
        @property
        def calls(self) -> CallManager: ...
        async def blocked(self) -> list[Contact]: ...
        async def _expire_forever(self) -> None: ...
        async def _replenish(self, *, everything: bool) -> None: ...

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
