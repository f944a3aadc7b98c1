"""What we know about other accounts: sessions, identity keys with trust, contacts.

Sessions are serialized ``SessionRecord`` bytes per peer device, opaque to the store.
Identities carry a trust state (``unverified``, ``verified``, ``changed``) that the engine's
trust policy (strict or trust-on-first-use) reads and writes. Contacts map account ids to
usernames; look-up by username is case-insensitive (Unicode case folding) and, should two
accounts have carried the same username, returns the one saved last.
"""

from __future__ import annotations

from veil.store.base import StoreBase
from veil.store.errors import StoreError
from veil.store.records import TRUST_STATES, Contact, IdentityRecord


class PeerStore(StoreBase):
    """Sessions, identities and contacts."""

    # --- sessions ---------------------------------------------------------------------------
    def session(self, account_id: str, device_id: int) -> bytes | None:
        """The serialized session with one device of a peer, or None."""
        row = self._one(
            "SELECT record FROM sessions WHERE account_id = ? AND device_id = ?",
            (account_id, device_id),
        )
        return None if row is None else bytes(row[0])

    def save_session(self, account_id: str, device_id: int, record: bytes) -> None:
        """Store (or replace) the serialized session with one device of a peer."""
        self._exec(
            "INSERT OR REPLACE INTO sessions (account_id, device_id, record) VALUES (?, ?, ?)",
            (account_id, device_id, bytes(record)),
        )

    def delete_session(self, account_id: str, device_id: int) -> None:
        """Forget the session with one device of a peer. No-op if there is none."""
        self._exec(
            "DELETE FROM sessions WHERE account_id = ? AND device_id = ?", (account_id, device_id)
        )

    def session_devices(self, account_id: str) -> list[int]:
        """The device ids of ``account_id`` we have sessions with, ascending."""
        rows = self._all(
            "SELECT device_id FROM sessions WHERE account_id = ? ORDER BY device_id",
            (account_id,),
        )
        return [int(row[0]) for row in rows]

    # --- identities -------------------------------------------------------------------------
    def identity(self, account_id: str) -> IdentityRecord | None:
        """The identity key we know for ``account_id`` and our trust in it, or None."""
        row = self._one(
            "SELECT account_id, identity_key, trust, first_seen_ms, changed_ms"
            " FROM identities WHERE account_id = ?",
            (account_id,),
        )
        if row is None:
            return None
        return IdentityRecord(row[0], bytes(row[1]), row[2], row[3], row[4])

    def save_identity(self, record: IdentityRecord) -> None:
        """Store (or replace) what we know about a peer's identity key."""
        if record.trust not in TRUST_STATES:
            raise StoreError(
                f"unknown trust state {record.trust!r} (expected one of {sorted(TRUST_STATES)})"
            )
        r = record
        self._exec(
            "INSERT OR REPLACE INTO identities"
            " (account_id, identity_key, trust, first_seen_ms, changed_ms) VALUES (?, ?, ?, ?, ?)",
            (r.account_id, bytes(r.identity_key), r.trust, r.first_seen_ms, r.changed_ms),
        )

    # --- contacts ---------------------------------------------------------------------------
    def save_contact(self, contact: Contact) -> None:
        """Store (or replace) the username of an account."""
        self._exec(
            "INSERT OR REPLACE INTO contacts (account_id, username, username_key) VALUES (?, ?, ?)",
            (contact.account_id, contact.username, contact.username.casefold()),
        )

    def contact(self, account_id: str) -> Contact | None:
        """The contact with this account id, or None."""
        row = self._one(
            "SELECT account_id, username FROM contacts WHERE account_id = ?", (account_id,)
        )
        return None if row is None else Contact(row[0], row[1])

    def contact_by_username(self, username: str) -> Contact | None:
        """The contact with this username, ignoring case; the latest saved if several."""
        row = self._one(
            "SELECT account_id, username FROM contacts WHERE username_key = ?"
            " ORDER BY rowid DESC LIMIT 1",
            (username.casefold(),),
        )
        return None if row is None else Contact(row[0], row[1])

    def contacts(self) -> list[Contact]:
        """Every contact, by username (case-insensitive), then account id."""
        rows = self._all(
            "SELECT account_id, username FROM contacts ORDER BY username_key, account_id"
        )
        return [Contact(row[0], row[1]) for row in rows]
