"""The engine: sessions in, sessions out, one store transaction per step.

ARCHITECTURE.md §3 (data flow) and §6.2 (state changes only on success): :meth:`Engine.encrypt`
starts missing sessions from bundles and encrypts one payload per device; :meth:`Engine.handle`
decrypts one envelope, applies its content (message, receipt, sync copy) and saves the
advanced session and the message together (:mod:`veil.engine.receive`).

Trust in peers' identity keys (strict or trust-on-first-use, verification, safety numbers) is
:mod:`veil.engine.trust`; both are mixed into :class:`Engine`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from veil.core import content as payload
from veil.core.crypto.x25519 import PrivateKey
from veil.core.errors import LocalError, SessionExpiredError
from veil.core.rng import Rng
from veil.core.signal import session
from veil.core.signal.pqxdh import PreKeyBundle
from veil.core.signal.record import deserialize_record, serialize_record
from veil.core.signal.state import SessionRecord
from veil.engine.call_log import EndedCall, record_call
from veil.engine.events import IdentityChanged
from veil.engine.incoming import message_record
from veil.engine.keys import KeyBatch, new_account_keys, one_time_prekeys
from veil.engine.receive import FAILURE_REASONS, Receiving
from veil.engine.trust import Trust, TrustMode
from veil.store import AccountRecord, DeviceStore, IdentityRecord, MessageRecord

__all__ = ["FAILURE_REASONS", "Engine", "OutgoingCopy", "TrustMode"]


@dataclass(frozen=True, slots=True)
class OutgoingCopy:
    """One device's ciphertext of a message (an envelope to send)."""

    account_id: str
    device_id: int
    registration_id: int
    type: int
    content: bytes

    def __repr__(self) -> str:
        return (
            f"OutgoingCopy(to {self.account_id}.{self.device_id}, type {self.type}, "
            f"{len(self.content)} bytes)"
        )


class Engine(Receiving, Trust):
    """One device's protocol state machine over its :class:`~veil.store.DeviceStore`."""

    def __init__(
        self,
        store: DeviceStore,
        *,
        rng: Rng,
        now_ms: Callable[[], int],
        trust: TrustMode = "tofu",
    ) -> None:
        if trust not in ("strict", "tofu"):
            raise LocalError(f"trust mode must be 'strict' or 'tofu', not {trust!r}")
        self.store = store
        self.rng = rng
        self.now_ms = now_ms
        self.trust_mode: TrustMode = trust
        self.failures: Counter[str] = Counter()
        """Envelopes that could not be used, by reason (a product metric)."""
        self.dropped: Counter[str] = Counter()
        """Envelopes read and dropped on purpose (``blocked``: from an account we block)."""
        self._account: AccountRecord | None = None
        self._refused: IdentityRecord | None = None

    # --- who we are -----------------------------------------------------------------------
    @property
    def account(self) -> AccountRecord:
        """Our account row (registered or linked); :class:`LocalError` before that."""
        if self._account is None:
            self._account = self.store.account()
            if self._account is None:
                raise LocalError("this profile has no account yet: register or link first")
        return self._account

    def forget_account_cache(self) -> None:
        """Re-read the account row on next use (after the caller changed it)."""
        self._account = None

    def _local(self) -> session.LocalIdentity:
        account = self.account
        return session.LocalIdentity(PrivateKey(account.identity_private), account.registration_id)

    def more_prekeys(self, *, everything: bool = False) -> KeyBatch:
        """A new batch of one-time prekeys (stored; the caller uploads the public halves);
        with ``everything``, also a new signed prekey and last-resort Kyber key (for a device
        whose first upload never arrived: the server has nothing to hand out)."""
        identity = PrivateKey(self.account.identity_private)
        with self.store.transaction():
            if everything:
                return new_account_keys(self.store, identity, self.rng, self.now_ms())
            return one_time_prekeys(self.store, identity, self.rng, self.now_ms())

    # --- sessions -------------------------------------------------------------------------
    def _record(self, account_id: str, device_id: int) -> SessionRecord:
        data = self.store.session(account_id, device_id)
        return SessionRecord() if data is None else deserialize_record(data)

    def devices_with_sessions(self, account_id: str) -> list[int]:
        """Devices of ``account_id`` we have a session with."""
        return [
            d
            for d in self.store.session_devices(account_id)
            if self._record(account_id, d).current is not None
        ]

    def forget_devices(self, account_id: str, device_ids: Sequence[int]) -> None:
        """Drop the sessions with these devices (removed, or re-registered: a new bundle will
        start a new session)."""
        with self.store.transaction():
            for device_id in device_ids:
                self.store.delete_session(account_id, device_id)

    def encrypt(
        self,
        account_id: str,
        device_ids: Sequence[int],
        plaintext: bytes,
        bundles: Mapping[int, PreKeyBundle],
    ) -> tuple[list[OutgoingCopy], list[IdentityChanged]]:
        """Encrypt ``plaintext`` (already padded) for each device, starting a session from
        ``bundles`` where there is none (or where a bundle is given: a fresh start). All or
        nothing: one transaction. :class:`UntrustedIdentityError` in strict mode when the
        peer's key changed."""
        local = self._local()
        decided: dict[str, IdentityRecord] = {}
        changed: list[str] = []
        trust = self._policy(account_id, decided, changed)
        now = self.now_ms()
        self._refused = None
        try:
            with self.store.transaction():
                copies = [
                    self._encrypt_one(account_id, d, plaintext, bundles.get(d), local, trust, now)
                    for d in device_ids
                ]
                self._apply(decided)
        finally:
            self._keep_refused()
        return copies, [IdentityChanged(a, None) for a in changed]

    def _encrypt_one(
        self,
        account_id: str,
        device_id: int,
        plaintext: bytes,
        bundle: PreKeyBundle | None,
        local: session.LocalIdentity,
        trust: session.TrustPolicy,
        now: int,
    ) -> OutgoingCopy:
        peer = f"{account_id}.{device_id}"
        record = self._record(account_id, device_id)
        if bundle is not None:
            session.initiate(
                record, bundle, local, rng=self.rng, now_ms=now, trust=trust, peer=peer
            )
        elif record.current is None:
            raise LocalError(f"no session with {peer} and no bundle to start one")
        try:
            message = session.encrypt(record, plaintext, now_ms=now, trust=trust, peer=peer)
        except SessionExpiredError:
            raise LocalError(f"the session with {peer} expired; fetch a bundle") from None
        assert record.current is not None
        self.store.save_session(account_id, device_id, serialize_record(record))
        return OutgoingCopy(
            account_id,
            device_id,
            record.current.remote_registration_id,
            message.type,
            message.serialized,
        )

    def unconfirmed(self, conversation: str, since_ms: int, limit: int = 50) -> list[MessageRecord]:
        """Our messages in ``conversation`` since ``since_ms`` that no device confirmed."""
        me = self.account.account_id
        return [
            m
            for m in self.store.messages(conversation, limit=500)
            if m.direction == "out"
            and m.sender_account_id == me
            and m.status in ("sent", "sending")
            and m.sent_ms >= since_ms
        ][-limit:]

    # --- outgoing bookkeeping -------------------------------------------------------------
    def record_call(self, call: EndedCall) -> MessageRecord | None:
        """Write the call-log line of a call that ended (:mod:`veil.engine.call_log`)."""
        account = self.account
        return record_call(self.store, (account.account_id, account.device_id), call, self.now_ms())

    def record_sent(
        self, conversation: str, content: payload.Content, server_ms: int | None, status: str
    ) -> None:
        """Keep our own copy of a message we sent (or failed to send)."""
        account = self.account
        record = message_record(
            conversation,
            content,
            "out",
            (account.account_id, account.device_id),
            server_ms,
            None,
            status,
        )
        with self.store.transaction():
            if not self.store.settings(conversation).known:
                self.store.set_state(conversation, "accepted", self.now_ms())
            if content.timer is not None:
                self.store.set_timer(conversation, content.timer.seconds, self.now_ms())
            if not self.store.add_message(record):
                self.store.set_status(conversation, content.message_id, status)
