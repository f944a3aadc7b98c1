"""Receiving, mixed into :class:`~veil.engine.Engine`: one envelope in, events out
(ARCHITECTURE.md §3, §6.2).

:meth:`Receiving.handle` decrypts one envelope, checks its franking tag, applies its content
(:mod:`veil.engine.incoming`) and saves the advanced session and the message together, with
the envelope id as a dedupe mark, so that a crash before the ack makes the server deliver it
again and the engine skip it. A failure is final: the envelope is dropped and counted by
reason (:data:`FAILURE_REASONS`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from veil.core import content as payload
from veil.core import franking
from veil.core.errors import (
    BadMacError,
    DecodeError,
    DuplicateMessageError,
    InvalidPreKeyError,
    NoSessionError,
    RemoteError,
    TooFarAheadError,
    UntrustedIdentityError,
    VeilError,
)
from veil.core.rng import Rng
from veil.core.signal import session
from veil.core.signal.record import serialize_record
from veil.core.signal.state import SessionRecord
from veil.core.signal.wire import PREKEY_TYPE, WHISPER_TYPE
from veil.engine.events import DecryptFailure, DeviceAdded, Event, IdentityChanged, IncomingEnvelope
from veil.engine.evidence import Evidence
from veil.engine.incoming import Applier, ContentError
from veil.engine.keys import StorePreKeys
from veil.store import AccountRecord, DeviceStore, IdentityRecord

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


class Receiving:
    """Decrypt-and-apply of incoming envelopes; see the module docstring."""

    store: DeviceStore
    rng: Rng
    now_ms: Callable[[], int]
    failures: Counter[str]
    dropped: Counter[str]
    _refused: IdentityRecord | None

    if TYPE_CHECKING:

        @property
        def account(self) -> AccountRecord: ...
        def _local(self) -> session.LocalIdentity: ...
        def _record(self, account_id: str, device_id: int) -> SessionRecord: ...
        def _policy(
            self, account_id: str, decided: dict[str, IdentityRecord], changed: list[str]
        ) -> session.TrustPolicy: ...
        def _apply(self, decided: Mapping[str, IdentityRecord]) -> None: ...
        def _keep_refused(self) -> None: ...

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
