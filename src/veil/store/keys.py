"""The account row and our prekeys' private halves (ARCHITECTURE.md §1, PQXDH).

The account is a single row, replaced as a whole. Prekeys are stored as opaque bytes under the
key ids the engine chose; saving an id again replaces the key (ids wrap around). One-time
prekeys are removed once used; a Kyber prekey is removed only if it is a one-time one, so the
last-resort key keeps answering every session that uses it. :meth:`KeyStore.next_key_id` is a
persisted counter per kind of key, starting at 1 and never going back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from veil.store.base import StoreBase
from veil.store.errors import StoreError
from veil.store.records import AccountRecord

KEY_KINDS: Final = frozenset({"signed", "kyber", "one_time"})

_ACCOUNT: Final = (
    "SELECT server_url, account_id, device_id, credential, username, identity_private,"
    " registration_id, created_ms FROM account WHERE singleton = 1"
)
_SAVE_ACCOUNT: Final = (
    "INSERT OR REPLACE INTO account (singleton, server_url, account_id, device_id, credential,"
    " username, identity_private, registration_id, created_ms)"
    " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class KeyStore(StoreBase):
    """The account row and our prekeys."""

    # --- account ----------------------------------------------------------------------------
    def account(self) -> AccountRecord | None:
        """This device's account, or None before registration or linking."""
        row = self._one(_ACCOUNT)
        return None if row is None else AccountRecord(*row)

    def save_account(self, account: AccountRecord) -> None:
        """Store the account, replacing any previous one."""
        a = account
        self._exec(
            _SAVE_ACCOUNT,
            (
                a.server_url,
                a.account_id,
                a.device_id,
                a.credential,
                a.username,
                bytes(a.identity_private),
                a.registration_id,
                a.created_ms,
            ),
        )

    # --- signed prekeys ---------------------------------------------------------------------
    def add_signed_prekey(self, key_id: int, private: bytes, created_ms: int) -> None:
        """Store a signed prekey's private half (replacing one with the same id)."""
        self._exec(
            "INSERT OR REPLACE INTO signed_prekeys (key_id, private, created_ms) VALUES (?, ?, ?)",
            (key_id, bytes(private), created_ms),
        )

    def signed_prekey(self, key_id: int) -> bytes | None:
        """The private half of signed prekey ``key_id``, or None."""
        row = self._one("SELECT private FROM signed_prekeys WHERE key_id = ?", (key_id,))
        return None if row is None else bytes(row[0])

    def remove_signed_prekey(self, key_id: int) -> None:
        """Forget a signed prekey (after rotation and a grace period). No-op if unknown."""
        self._exec("DELETE FROM signed_prekeys WHERE key_id = ?", (key_id,))

    def signed_prekey_ids(self) -> list[tuple[int, int]]:
        """``(key_id, created_ms)`` of every stored signed prekey, oldest first."""
        rows = self._all(
            "SELECT key_id, created_ms FROM signed_prekeys ORDER BY created_ms, key_id"
        )
        return [(int(k), int(t)) for k, t in rows]

    # --- Kyber prekeys ----------------------------------------------------------------------
    def add_kyber_prekey(
        self, key_id: int, secret: bytes, *, last_resort: bool, created_ms: int
    ) -> None:
        """Store a Kyber prekey's secret (replacing one with the same id)."""
        self._exec(
            "INSERT OR REPLACE INTO kyber_prekeys (key_id, secret, last_resort, created_ms)"
            " VALUES (?, ?, ?, ?)",
            (key_id, bytes(secret), int(bool(last_resort)), created_ms),
        )

    def kyber_prekey(self, key_id: int) -> bytes | None:
        """The secret of Kyber prekey ``key_id`` (one-time or last resort), or None."""
        row = self._one("SELECT secret FROM kyber_prekeys WHERE key_id = ?", (key_id,))
        return None if row is None else bytes(row[0])

    def remove_kyber_prekey(self, key_id: int) -> None:
        """Forget a used one-time Kyber prekey; a last-resort key is kept. No-op if unknown."""
        self._exec("DELETE FROM kyber_prekeys WHERE key_id = ? AND last_resort = 0", (key_id,))

    def kyber_prekey_count(self) -> int:
        """How many one-time Kyber prekeys are left (last-resort keys not counted)."""
        return int(self._scalar("SELECT COUNT(*) FROM kyber_prekeys WHERE last_resort = 0"))

    # --- one-time EC prekeys ----------------------------------------------------------------
    def add_one_time_prekeys(self, keys: Sequence[tuple[int, bytes]]) -> None:
        """Store one-time prekeys ``(key_id, private)`` (replacing ones with the same id)."""
        self._exec_many(
            "INSERT OR REPLACE INTO one_time_prekeys (key_id, private) VALUES (?, ?)",
            [(key_id, bytes(private)) for key_id, private in keys],
        )

    def one_time_prekey(self, key_id: int) -> bytes | None:
        """The private half of one-time prekey ``key_id``, or None (unknown or used)."""
        row = self._one("SELECT private FROM one_time_prekeys WHERE key_id = ?", (key_id,))
        return None if row is None else bytes(row[0])

    def remove_one_time_prekey(self, key_id: int) -> None:
        """Forget a used one-time prekey. No-op if unknown."""
        self._exec("DELETE FROM one_time_prekeys WHERE key_id = ?", (key_id,))

    def one_time_prekey_count(self) -> int:
        """How many one-time prekeys are left."""
        return int(self._scalar("SELECT COUNT(*) FROM one_time_prekeys"))

    # --- key ids ----------------------------------------------------------------------------
    def next_key_id(self, kind: str) -> int:
        """The next id for a key of ``kind`` (``"signed"``, ``"kyber"``, ``"one_time"``).

        1, 2, 3, ... per kind, persisted with the transaction that asks: once it commits the
        id is never handed out again (a rolled-back transaction gives its ids back, together
        with the keys it stored under them).
        """
        if kind not in KEY_KINDS:
            raise StoreError(f"unknown key kind {kind!r} (expected one of {sorted(KEY_KINDS)})")

        def work(conn: sqlite3.Connection) -> int:
            row = self._sql(
                conn,
                "UPDATE key_counters SET last_id = last_id + 1 WHERE kind = ? RETURNING last_id",
                (kind,),
            ).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: key counter {kind!r} is missing")
            return int(row[0])

        return self._write(work)
