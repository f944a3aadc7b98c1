"""Per-conversation settings (disappearing-message timer, message-request state) and the
list of blocked accounts (schema ``0002_conversation_rules.sql``).

A conversation with no row has never been touched: no timer, and no state yet -- the engine
decides "accepted" or "request" when its first message arrives.
"""

from __future__ import annotations

import sqlite3

from veil.store.base import StoreBase
from veil.store.errors import StoreError
from veil.store.records import CONVERSATION_STATES, ConversationSettings

_UPSERT_TIMER = (
    "INSERT INTO conversations (conversation, timer_s, updated_ms) VALUES (?, ?, ?)"
    " ON CONFLICT (conversation) DO UPDATE SET timer_s = excluded.timer_s,"
    " updated_ms = excluded.updated_ms"
)
_UPSERT_STATE = (
    "INSERT INTO conversations (conversation, state, updated_ms) VALUES (?, ?, ?)"
    " ON CONFLICT (conversation) DO UPDATE SET state = excluded.state,"
    " updated_ms = excluded.updated_ms"
)


class ConversationStore(StoreBase):
    """Timers, request states, blocks."""

    def settings(self, conversation: str) -> ConversationSettings:
        """The conversation's timer and state (defaults, ``known=False``, if never set)."""
        row = self._one(
            "SELECT timer_s, state FROM conversations WHERE conversation = ?", (conversation,)
        )
        if row is None:
            return ConversationSettings(conversation)
        return ConversationSettings(conversation, int(row[0]), str(row[1]), known=True)

    def set_timer(self, conversation: str, seconds: int, now_ms: int) -> None:
        """Set the conversation's disappearing-message timer (0: off)."""
        if seconds < 0:
            raise StoreError("a timer cannot be negative")
        self._exec(_UPSERT_TIMER, (conversation, seconds, now_ms))

    def set_state(self, conversation: str, state: str, now_ms: int) -> None:
        """Mark the conversation ``"accepted"`` or ``"request"``."""
        if state not in CONVERSATION_STATES:
            raise StoreError(f"unknown conversation state {state!r}")
        self._exec(_UPSERT_STATE, (conversation, state, now_ms))

    def block(self, account_id: str, now_ms: int) -> None:
        """Add ``account_id`` to the blocked list (no change if already there)."""
        self._exec(
            "INSERT INTO blocked (account_id, since_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (account_id, now_ms),
        )

    def unblock(self, account_id: str) -> bool:
        """Remove ``account_id`` from the blocked list; whether it was there."""
        return self._exec("DELETE FROM blocked WHERE account_id = ?", (account_id,)) == 1

    def is_blocked(self, account_id: str) -> bool:
        """Whether we block ``account_id``."""
        return self._one("SELECT 1 FROM blocked WHERE account_id = ?", (account_id,)) is not None

    def blocked(self) -> list[str]:
        """The accounts we block, oldest block first."""
        return [str(r[0]) for r in self._all("SELECT account_id FROM blocked ORDER BY since_ms")]

    def replace_blocked(self, account_ids: list[str], now_ms: int) -> None:
        """Make the blocked list exactly ``account_ids`` (the server's list is the truth)."""
        wanted = sorted(set(account_ids))

        def work(conn: sqlite3.Connection) -> None:
            have = {str(r[0]) for r in self._sql(conn, "SELECT account_id FROM blocked")}
            for gone in have - set(wanted):
                self._sql(conn, "DELETE FROM blocked WHERE account_id = ?", (gone,))
            for account_id in wanted:
                self._sql(
                    conn,
                    "INSERT INTO blocked (account_id, since_ms) VALUES (?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (account_id, now_ms),
                )

        self._write(work)
