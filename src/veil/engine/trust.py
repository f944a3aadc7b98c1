"""Trust in peers' identity keys, mixed into :class:`~veil.engine.Engine` (ARCHITECTURE.md §1
"verification").

A peer's identity key is remembered on first use. A different key later is, in ``strict``
mode, refused until the user verifies it again; in ``tofu`` mode accepted with an
:class:`~veil.engine.events.IdentityChanged` event. Safety numbers are libsignal's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import LocalError
from veil.core.signal import session
from veil.core.signal.fingerprint import CURRENT_VERSION, DEFAULT_ITERATIONS, Fingerprint
from veil.core.signal.fingerprint import fingerprint as safety_number
from veil.store import AccountRecord, DeviceStore, IdentityRecord

TrustMode = Literal["strict", "tofu"]


class Trust:
    """The trust callback the core asks, identity records, verification, safety numbers."""

    store: DeviceStore
    now_ms: Callable[[], int]
    trust_mode: TrustMode
    _refused: IdentityRecord | None

    if TYPE_CHECKING:

        @property
        def account(self) -> AccountRecord: ...

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

    def _keep_refused(self) -> None:
        """Strict mode refused a changed key: keep it (as ``changed``) so that the user can
        compare safety numbers and verify it; nothing else of the failed step is kept."""
        refused, self._refused = self._refused, None
        if refused is not None:
            with self.store.transaction():
                self.store.save_identity(refused)
