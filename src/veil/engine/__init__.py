"""The client's engine: load state from the store, run the core, save the result atomically.

ARCHITECTURE.md §2-3: between the public SDK (:mod:`veil.client`, which does the network I/O)
and the sans-I/O core. Every step that changes protocol state -- starting a session,
encrypting, decrypting -- runs inside one store transaction, so a crash leaves either the old
state or the new one with its message, never half of it.
"""

from veil.core.signal.fingerprint import Fingerprint
from veil.core.signal.pqxdh import PreKeyBundle
from veil.engine.attachments import (
    SealedAttachment,
    blob_size,
    open_attachment,
    seal_attachment,
)
from veil.engine.call_log import EndedCall, call_log_content, call_outcome
from veil.engine.engine import Engine, OutgoingCopy, TrustMode
from veil.engine.events import (
    CallLogSynced,
    CallSignalReceived,
    ConversationChanged,
    DecryptFailure,
    DeviceAdded,
    Event,
    IdentityChanged,
    IncomingEnvelope,
    MessageReceived,
    ReceiptReceived,
    SessionReset,
    SyncedSent,
    TimerChanged,
    TypingChanged,
)
from veil.engine.keys import (
    KeyBatch,
    PublicKyberPreKey,
    PublicSignedPreKey,
    bundle,
    new_account_keys,
)
from veil.store import (
    CALL_OUTCOMES,
    AccountRecord,
    CallLog,
    Contact,
    ConversationSummary,
    DeviceStore,
    IdentityRecord,
    MessageRecord,
    OutboxItem,
    StoreError,
)

__all__ = [
    "CALL_OUTCOMES",
    "AccountRecord",
    "CallLog",
    "CallLogSynced",
    "CallSignalReceived",
    "Contact",
    "ConversationChanged",
    "ConversationSummary",
    "DecryptFailure",
    "DeviceAdded",
    "DeviceStore",
    "EndedCall",
    "Engine",
    "Event",
    "Fingerprint",
    "IdentityChanged",
    "IdentityRecord",
    "IncomingEnvelope",
    "KeyBatch",
    "MessageReceived",
    "MessageRecord",
    "OutboxItem",
    "OutgoingCopy",
    "PreKeyBundle",
    "PublicKyberPreKey",
    "PublicSignedPreKey",
    "ReceiptReceived",
    "SealedAttachment",
    "SessionReset",
    "StoreError",
    "SyncedSent",
    "TimerChanged",
    "TrustMode",
    "TypingChanged",
    "blob_size",
    "bundle",
    "call_log_content",
    "call_outcome",
    "new_account_keys",
    "open_attachment",
    "seal_attachment",
]
