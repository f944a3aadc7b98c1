"""The engine: sessions in, sessions out, one store transaction per step.

ARCHITECTURE.md §3 (data flow) and §6.2 (state changes only on success): :meth:`Engine.encrypt`
starts missing sessions from bundles and encrypts one payload per device; :meth:`Engine.handle`
decrypts one envelope, applies its content (message, receipt, sync copy) and saves the
advanced session and the message together, with the envelope id as a dedupe mark, so that a
crash before the ack makes the server deliver it again and the engine skip it.

Trust (ARCHITECTURE.md §1 "verification"): a peer's identity key is remembered on first use.
A different key later is, in ``strict`` mode, refused until the user verifies it again; in
``tofu`` mode accepted with an :class:`~veil.engine.events.IdentityChanged` event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from veil.core import content as payload
from veil.core import franking
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import (
    BadMacError,
    DecodeError,
    DuplicateMessageError,
    InvalidPreKeyError,
    LocalError,
    NoSessionError,
    RemoteError,
    SessionExpiredError,
    TooFarAheadError,
    UntrustedIdentityError,
    VeilError,
)
from veil.core.rng import Rng
from veil.core.signal import session
from veil.core.signal.fingerprint import CURRENT_VERSION, DEFAULT_ITERATIONS, Fingerprint
from veil.core.signal.fingerprint import fingerprint as safety_number
from veil.core.signal.pqxdh import PreKeyBundle
from veil.core.signal.record import deserialize_record, serialize_record
from veil.core.signal.state import SessionRecord
from veil.core.signal.wire import PREKEY_TYPE, WHISPER_TYPE
from veil.engine.call_log import EndedCall, record_call
from veil.engine.events import (
    DecryptFailure,
    DeviceAdded,
    Event,
    IdentityChanged,
    IncomingEnvelope,
)
from veil.engine.evidence import Evidence
from veil.engine.incoming import Applier, ContentError, message_record
from veil.engine.keys import KeyBatch, StorePreKeys, new_account_keys, one_time_prekeys
from veil.store import AccountRecord, DeviceStore, IdentityRecord, MessageRecord

TrustMode = Literal["strict", "tofu"]

FAILURE_REASONS: Final = (
    "no_session",
    "bad_mac",
    "untrusted_identity",
    "invalid_prekey",
    "duplicate",
    "too_far_ahead",
    "bad_envelope",
    "bad_content",
    "bad_franking",
    "unknown_type",
)
"""Why an envelope could not be used (``DecryptFailure.reason``; counted per reason)."""


class _FrankingError(RemoteError):
    """The franking tag beside the message is not the one of its content (never shown)."""


class _UnknownTypeError(RemoteError):
    """An envelope type that is neither a PreKey nor a whisper message."""


def _reason(exc: VeilError) -> str:
    for kind, reason in (
        (ContentError, "bad_content"),
        (_FrankingError, "bad_franking"),
        (_UnknownTypeError, "unknown_type"),
        (NoSessionError, "no_session"),
        (DuplicateMessageError, "duplicate"),
        (TooFarAheadError, "too_far_ahead"),
        (BadMacError, "bad_mac"),
        (UntrustedIdentityError, "untrusted_identity"),
        (InvalidPreKeyError, "invalid_prekey"),
    ):
        if isinstance(exc, kind):
            return reason
    return "bad_envelope"


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


class Engine:
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

    # --- trust ----------------------------------------------------------------------------
    def _policy(
        self, account_id: str, decided: dict[str, IdentityRecord], changed: list[str]
    ) -> session.TrustPolicy:
        """The core's trust callback for ``account_id``; identity updates it decides are
        collected in ``decided`` and saved only if the step succeeds."""

        def trust(key: PublicKey) -> bool:
            raw = key.serialize()
            known = decided.get(account_id) or self.store.identity(account_id)
            now = self.now_ms()
            if known is None:
                decided[account_id] = IdentityRecord(account_id, raw, "unverified", now)
                return True
            if known.identity_key == raw:
                return known.trust != "changed" or self.trust_mode == "tofu"
            if self.trust_mode == "strict":
                decided[account_id] = IdentityRecord(
                    account_id, raw, "changed", known.first_seen_ms, now
                )
                self._refused = decided[account_id]  # kept even though the step fails
                return False
            decided[account_id] = IdentityRecord(
                account_id, raw, "unverified", known.first_seen_ms, now
            )
            changed.append(account_id)
            return True

        return trust

    def _apply(self, decided: Mapping[str, IdentityRecord]) -> None:
        for record in decided.values():
            self.store.save_identity(record)

    def identity(self, account_id: str) -> IdentityRecord | None:
        """What we know of a peer's identity key."""
        return self.store.identity(account_id)

    def verify(self, account_id: str) -> IdentityRecord:
        """Mark the peer's current identity key as verified by the user."""
        with self.store.transaction():
            known = self.store.identity(account_id)
            if known is None:
                raise LocalError("no identity key known for that account yet")
            record = IdentityRecord(
                account_id, known.identity_key, "verified", known.first_seen_ms, known.changed_ms
            )
            self.store.save_identity(record)
        return record

    def safety_number(self, account_id: str) -> Fingerprint:
        """The safety number with the peer (libsignal's 60 digits and QR payload)."""
        known = self.store.identity(account_id)
        if known is None:
            raise LocalError("no identity key known for that account yet")
        ours = PrivateKey(self.account.identity_private).public_key
        return safety_number(
            CURRENT_VERSION,
            DEFAULT_ITERATIONS,
            self.account.account_id.encode(),
            ours,
            account_id.encode(),
            PublicKey.deserialize(known.identity_key),
        )

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

    # --- receiving ------------------------------------------------------------------------
    def handle(self, envelope: IncomingEnvelope) -> list[Event]:
        """Decrypt and apply one envelope; the caller acks it afterwards (whatever this
        returns: a failure is final, the envelope is dropped and counted)."""
        self._refused = None
        with self.store.transaction():
            if self.store.envelope_seen(envelope.envelope_id):
                return []
            try:
                events = self._open(envelope)
            except VeilError as exc:
                events = [self._failure(envelope, _reason(exc))]
            self.store.mark_envelope(envelope.envelope_id, self.now_ms())
        self._keep_refused()
        return events

    def _keep_refused(self) -> None:
        """Strict mode refused a changed key: keep it (as ``changed``) so that the user can
        compare safety numbers and verify it; nothing else of the failed step is kept."""
        refused, self._refused = self._refused, None
        if refused is not None:
            with self.store.transaction():
                self.store.save_identity(refused)

    def _failure(self, envelope: IncomingEnvelope, reason: str) -> DecryptFailure:
        self.failures[reason] += 1
        return DecryptFailure(
            envelope.sender_account_id,
            envelope.sender_device_id,
            envelope.envelope_id,
            reason,
            envelope.server_ms,
        )

    def _open(self, envelope: IncomingEnvelope) -> list[Event]:
        sender = envelope.sender_account_id
        device = envelope.sender_device_id
        peer = f"{sender}.{device}"
        decided: dict[str, IdentityRecord] = {}
        changed: list[str] = []
        trust = self._policy(sender, decided, changed)
        record = self._record(sender, device)
        others = [d for d in self.store.session_devices(sender) if d != device]
        new_device = record.current is None and not record.previous and bool(others)
        if envelope.type == PREKEY_TYPE:
            result = session.decrypt_prekey(
                record,
                envelope.content,
                self._local(),
                StorePreKeys(self.store),
                rng=self.rng,
                trust=trust,
                peer=peer,
            )
            plaintext = result.plaintext
            if result.used_one_time_prekey_id is not None:
                self.store.remove_one_time_prekey(result.used_one_time_prekey_id)
            if result.used_kyber_prekey_id is not None:
                self.store.remove_kyber_prekey(result.used_kyber_prekey_id)
        elif envelope.type == WHISPER_TYPE:
            plaintext = session.decrypt_signal(
                record, envelope.content, rng=self.rng, trust=trust, peer=peer
            )
        else:
            raise _UnknownTypeError(f"envelope type {envelope.type}")
        # Authentic: the advanced session is kept even if the content turns out unusable.
        self.store.save_session(sender, device, serialize_record(record))
        self._apply(decided)
        events: list[Event] = [IdentityChanged(a, envelope.envelope_id) for a in changed]
        if new_device:  # a first message from another device of someone we know
            events.append(DeviceAdded(sender, device))
        try:
            opened = franking.open_franked(payload.unpad(plaintext))
            content = payload.decode_content(opened.content)
        except DecodeError as exc:
            raise ContentError(str(exc)) from None
        if not franking.check_franking_tag(opened.key, opened.content, envelope.franking_tag):
            raise _FrankingError("the franking tag does not match the message")
        me = self.account
        evidence = Evidence(
            opened.content,
            opened.key,
            envelope.reporting_tag,
            envelope.franking_key_id,
            me.device_id,
        )
        applier = Applier(self.store, me.account_id, self.now_ms())
        applied = applier.apply(envelope, content, evidence.encode())
        if applier.blocked:
            self.dropped["blocked"] += 1  # queued before the block, or a lying server
        return events + applied

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
