"""Client-side persistent state of one device profile (ARCHITECTURE.md §2, `store`).

:class:`DeviceStore` keeps the account, prekeys, sessions, identities, contacts, messages,
processed envelope ids and the outbox in one SQLite file per profile, with versioned
migrations. It imports only :mod:`veil.core` and the standard library.
"""

from __future__ import annotations

from veil.store.device_store import DeviceStore
from veil.store.errors import StoreError
from veil.store.records import (
    CALL_OUTCOMES,
    AccountRecord,
    CallLog,
    Contact,
    ConversationSettings,
    ConversationSummary,
    IdentityRecord,
    MessageRecord,
    OutboxItem,
)

__all__ = [
    "CALL_OUTCOMES",
    "AccountRecord",
    "CallLog",
    "Contact",
    "ConversationSettings",
    "ConversationSummary",
    "DeviceStore",
    "IdentityRecord",
    "MessageRecord",
    "OutboxItem",
    "StoreError",
]
