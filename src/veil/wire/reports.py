"""Abuse reports with message franking (``POST /v1/reports``).

The reporter reveals, per message, what lets the server check it (``veil.core.franking``):
the franked content bytes exactly as decrypted, the franking key found beside them, the
reporting tag and key id the server delivered with the envelope, and the context that tag
binds (sender device, the reporter's receiving device, server time). The sender is
``reported_account_id``; the recipient is the caller's account. A report is all or nothing:
if any message fails verification the answer is 422 ``report_invalid`` naming it (``index``,
``reason``) and nothing is recorded; a message already reported by this account is 409
``already_reported``.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from veil.wire.types import AccountId, DeviceId

MAX_REPORTED: Final = 50
MAX_REVEALED: Final = 96 * 1024
"""Largest franked content (64 KiB of text plus its fields)."""

Key32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class ReportedMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One revealed message."""

    content: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_REVEALED)]
    franking_key: Key32
    reporting_tag: Key32
    key_id: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    sender_device_id: DeviceId
    recipient_device_id: DeviceId
    server_ms: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class ReportRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Report ``reported_account_id`` with the messages the reporter chose to reveal."""

    reported_account_id: AccountId
    messages: Annotated[list[ReportedMessage], msgspec.Meta(min_length=1, max_length=MAX_REPORTED)]
    reason: Annotated[
        str, msgspec.Meta(max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")
    ] = ""


class ReportResponse(msgspec.Struct, frozen=True):
    """The report was verified and recorded."""

    report_id: str
    messages: int
