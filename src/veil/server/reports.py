"""Abuse reports: verify revealed messages against their reporting tags, then record them.

``POST /v1/reports`` (:mod:`veil.wire.reports`). The caller (the reporter) reveals, per
message, the franked content, its franking key ``Kf``, the reporting tag ``R`` and key id the
server delivered, and the context ``R`` binds. The verification rule, per message ``i``:

1. ``key_id`` names a reporting secret ``Ks`` of this server (else invalid);
2. :func:`veil.core.franking.check_report`: with ``T = HMAC(Kf, content)`` recomputed,
   ``R == HMAC(Ks, "veil report v1" || key_id || T || reported_account_id ||
   sender_device_id || caller's account id || recipient_device_id || server_ms)`` (constant
   time). The recipient is always the caller's own account: nobody can report a message
   that was not delivered to them, nor change a byte of it, its sender, device or time;
3. the content decodes (:func:`veil.core.content.decode_content`) to a text and/or attachment
   message (receipts, typing, sync copies and other control payloads are not reportable);
4. no two revealed messages carry the same reporting tag.

All or nothing: the first failure is a 422 ``report_invalid`` with ``{index, reason}`` and
nothing is stored. A message whose reporting tag this account already reported is a 409
``already_reported`` (the SHA-256 of each accepted tag is kept per reporter). The report
keeps the text, message id, sender's time and an attachment summary (file name, size,
content type, blob digest) -- never the attachment key, nor anything not revealed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from veil.core.content import decode_content
from veil.core.errors import DecodeError
from veil.core.franking import ReportingContext, check_report
from veil.server import errors
from veil.server.accounts import Caller
from veil.server.report_store import (
    AlreadyReportedError,
    AttachmentSummary,
    Report,
    ReportedItem,
    ReportStore,
)
from veil.server.reporting import ReportingKeys
from veil.server.repository import Repository
from veil.wire.reports import ReportedMessage, ReportRequest, ReportResponse


def invalid(index: int, reason: str) -> errors.ApiError:
    """422 ``report_invalid`` naming the revealed message that failed and why."""
    return errors.ApiError(
        422,
        "report_invalid",
        f"reported message {index} does not verify: {reason}",
        {"index": index, "reason": reason},
    )


class ReportService:
    """Verifies and records abuse reports."""

    def __init__(
        self,
        repo: Repository,
        store: ReportStore,
        keys: ReportingKeys,
        now_ms: Callable[[], int],
    ) -> None:
        self.repo = repo
        self.store = store
        self.keys = keys
        self.now_ms = now_ms

    async def report(self, caller: Caller, req: ReportRequest) -> ReportResponse:
        """Verify every revealed message, then record the report (or refuse it whole)."""
        if req.reported_account_id == caller.account_id:
            raise errors.bad_request("an account cannot report itself")
        reported = await self.repo.get_account(req.reported_account_id)
        if reported is None:
            raise errors.not_found("reported account")
        reporter = await self.repo.get_account(caller.account_id)
        if reporter is None:  # deleted between authentication and now
            raise errors.unauthorized()
        items = []
        seen: set[bytes] = set()
        for index, message in enumerate(req.messages):
            if message.reporting_tag in seen:
                raise invalid(index, "the same message is revealed twice")
            seen.add(message.reporting_tag)
            items.append(await self._verify(index, caller, req.reported_account_id, message))
        report = Report(
            report_id=secrets.token_hex(16),
            reporter_account_id=caller.account_id,
            reporter_username=reporter.display_username,
            reporter_device_id=caller.device_id,
            reported_account_id=reported.account_id,
            reported_username=reported.display_username,
            created_ms=self.now_ms(),
            reason=req.reason,
            messages=tuple(items),
        )
        guards = tuple(hashlib.sha256(m.reporting_tag).digest() for m in req.messages)
        try:
            await self.store.add_report(report, guards)
        except AlreadyReportedError:
            raise errors.conflict(
                "already_reported", "a message of this report was already reported"
            ) from None
        return ReportResponse(report.report_id, len(items))

    async def _verify(
        self, index: int, caller: Caller, sender: str, m: ReportedMessage
    ) -> ReportedItem:
        secret = await self.keys.secret(m.key_id)
        if secret is None:
            raise invalid(index, "unknown reporting key id")
        context = ReportingContext(
            b"",  # recomputed by check_report from the revealed content and key
            sender,
            m.sender_device_id,
            caller.account_id,
            m.recipient_device_id,
            m.server_ms,
        )
        problem = check_report(
            secret, m.key_id, m.content, m.franking_key, m.reporting_tag, context
        )
        if problem is not None:
            raise invalid(index, problem)
        try:
            content = decode_content(m.content)
        except DecodeError:
            raise invalid(index, "the content cannot be decoded") from None
        if content.text is None and content.attachment is None:
            raise invalid(index, "only text and attachment messages can be reported")
        a = content.attachment
        summary = None
        if a is not None:
            summary = AttachmentSummary(a.file_name, a.size, a.content_type, a.digest)
        return ReportedItem(
            sender_device_id=m.sender_device_id,
            recipient_device_id=m.recipient_device_id,
            server_ms=m.server_ms,
            key_id=m.key_id,
            message_id=content.message_id.hex(),
            sent_ms=content.sent_ms,
            text=content.text,
            attachment=summary,
        )
