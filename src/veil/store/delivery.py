"""Exactly-once processing of at-least-once delivery, and the outbox of unsent contents.

The server may deliver an envelope more than once (ARCHITECTURE.md §3). The engine checks
:meth:`DeliveryStore.envelope_seen` and records :meth:`DeliveryStore.mark_envelope` in the same
transaction as the session and message it stores, so an envelope is processed fully once or
not at all; old ids are purged once the server can no longer redeliver them.

The outbox keeps encoded contents until the server accepted them, first in, first out; item ids
are never reused, so a stale id cannot remove a newer item.
"""

from __future__ import annotations

from veil.store.base import StoreBase
from veil.store.errors import StoreError
from veil.store.records import OutboxItem


class DeliveryStore(StoreBase):
    """Processed envelope ids and the outbox."""

    # --- envelope dedupe --------------------------------------------------------------------
    def envelope_seen(self, envelope_id: int) -> bool:
        """Whether this envelope id was already processed."""
        row = self._one("SELECT 1 FROM seen_envelopes WHERE envelope_id = ?", (envelope_id,))
        return row is not None

    def mark_envelope(self, envelope_id: int, at_ms: int) -> None:
        """Record an envelope id as processed at ``at_ms`` (the first time counts)."""
        self._exec(
            "INSERT INTO seen_envelopes (envelope_id, at_ms) VALUES (?, ?)"
            " ON CONFLICT (envelope_id) DO NOTHING",
            (envelope_id, at_ms),
        )

    def purge_envelopes(self, older_than_ms: int) -> int:
        """Forget envelope ids processed before ``older_than_ms``; return how many."""
        return self._exec("DELETE FROM seen_envelopes WHERE at_ms < ?", (older_than_ms,))

    # --- outbox -----------------------------------------------------------------------------
    def enqueue(self, item: OutboxItem) -> int:
        """Add an item to the outbox; return the id the store gave it.

        ``item.item_id`` must be None (ids are the store's); anything else is a
        :class:`StoreError`.
        """
        if item.item_id is not None:
            raise StoreError("enqueue() assigns item_id itself: pass item_id=None")
        if item.attempts < 0:
            raise StoreError(f"attempts must not be negative, got {item.attempts}")
        item_id = self._write(
            lambda conn: self._sql(
                conn,
                "INSERT INTO outbox (conversation, message_id, content, created_ms, attempts)"
                " VALUES (?, ?, ?, ?, ?) RETURNING item_id",
                (
                    item.conversation,
                    bytes(item.message_id),
                    bytes(item.content),
                    item.created_ms,
                    item.attempts,
                ),
            ).fetchone()[0]
        )
        return int(item_id)

    def outbox(self) -> list[OutboxItem]:
        """Every item waiting to be sent, oldest first."""
        rows = self._all(
            "SELECT item_id, conversation, message_id, content, created_ms, attempts"
            " FROM outbox ORDER BY item_id"
        )
        return [
            OutboxItem(int(r[0]), r[1], bytes(r[2]), bytes(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]

    def remove_outbox(self, item_id: int) -> None:
        """Remove a sent (or abandoned) item. No-op if it is gone already."""
        self._exec("DELETE FROM outbox WHERE item_id = ?", (item_id,))

    def bump_outbox(self, item_id: int) -> None:
        """Count one more failed attempt to send an item. No-op if it is gone."""
        self._exec("UPDATE outbox SET attempts = attempts + 1 WHERE item_id = ?", (item_id,))
