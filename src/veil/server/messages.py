"""Sending: validate a send, store it durably (one transaction), then hand the stored
envelopes to the notifier (which pushes them to connected targets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from veil.core.franking import ReportingContext, reporting_tag
from veil.server import errors
from veil.server.accounts import Caller, require_account_id
from veil.server.delivery import Notifier
from veil.server.metrics import Metrics
from veil.server.model import Envelope, OutgoingEnvelope, StoredMessage
from veil.server.reporting import ReportingKeys
from veil.server.repository import NotFoundError, QueueFullError, Repository
from veil.wire.messages import Mismatch, SendRequest, SendResponse, StoredEnvelope

MAX_QUEUE: Final = 10_000
"""Envelopes one device may have waiting; a send to a full queue is refused (429)."""


class MessageService:
    """The send path: ``PUT /v1/messages/{account_id}``."""

    def __init__(
        self,
        repo: Repository,
        notifier: Notifier,
        now_ms: Callable[[], int],
        max_queue: int = MAX_QUEUE,
        metrics: Metrics | None = None,
        reporting: ReportingKeys | None = None,
    ) -> None:
        self.repo = repo
        self.notifier = notifier
        self.now_ms = now_ms
        self.max_queue = max_queue
        self.metrics = metrics
        self.reporting = reporting
        """Reporting secrets: with them, every envelope that carries a franking tag gets a
        reporting tag (:mod:`veil.core.franking`); without, franking tags pass untagged."""

    async def send(self, caller: Caller, recipient: str, req: SendRequest) -> SendResponse:
        """Store the envelopes (or refuse with the device mismatch) and notify the targets."""
        require_account_id(recipient)
        targets = [(e.account_id or recipient, e.device_id) for e in req.envelopes]
        if len(set(targets)) != len(targets):
            raise errors.bad_request("two envelopes for the same device")
        now_ms = self.now_ms()  # the server time the reporting tags bind is the one stored
        envelopes = await self._outgoing(caller, recipient, req, now_ms)
        try:
            result = await self.repo.store_message(
                caller.account_id,
                caller.device_id,
                recipient,
                envelopes,
                req.idempotency_key,
                now_ms,
                self.max_queue,
            )
        except NotFoundError:
            raise errors.not_found("recipient") from None
        except QueueFullError as exc:
            raise errors.ApiError(
                429,
                "queue_full",
                "a recipient device has too many undelivered messages; retry later",
                {"account_id": exc.account_id, "device_id": exc.device_id},
            ) from None
        if not isinstance(result, StoredMessage):
            mismatches = [
                Mismatch(m.account_id, list(m.missing), list(m.extra), list(m.stale))
                for m in result
            ]
            raise errors.ApiError(
                409,
                "device_mismatch",
                "the device list changed: refetch keys for the listed devices and resend",
                {"mismatches": mismatches},
            )
        if not result.duplicate:
            if self.metrics is not None:
                self.metrics.envelopes_stored(len(result.envelope_ids) - len(result.dropped))
            self.notifier.deliver(_stored(caller, recipient, envelopes, result))
        stored = [StoredEnvelope(a, d, i) for (a, d), i in sorted(result.envelope_ids.items())]
        return SendResponse(result.server_ms, stored, result.duplicate)

    async def _outgoing(
        self, caller: Caller, recipient: str, req: SendRequest, now_ms: int
    ) -> list[OutgoingEnvelope]:
        """The envelopes to store; one HMAC per envelope that carries a franking tag."""
        key_id, secret = 0, b""
        if self.reporting is not None and any(e.franking_tag for e in req.envelopes):
            key_id, secret = (
                self.reporting.current() if self.reporting.loaded else await self.reporting.load()
            )
        envelopes = []
        for e in req.envelopes:
            target = e.account_id or recipient
            tag = None
            if e.franking_tag is not None and secret:
                context = ReportingContext(
                    e.franking_tag, caller.account_id, caller.device_id, target, e.device_id, now_ms
                )
                tag = reporting_tag(secret, key_id, context)
            envelopes.append(
                OutgoingEnvelope(
                    target,
                    e.device_id,
                    e.registration_id,
                    e.type,
                    e.content,
                    franking_tag=e.franking_tag,
                    reporting_tag=tag,
                    franking_key_id=key_id if tag is not None else 0,
                )
            )
        return envelopes


def _stored(
    caller: Caller, recipient: str, envelopes: list[OutgoingEnvelope], result: StoredMessage
) -> list[Envelope]:
    """The envelopes ``result`` stored, as the notifier pushes them: the recipient's copies
    carry ``result.request``; the ``dropped`` ones (the recipient blocks the caller) are left
    out."""
    ids = result.envelope_ids
    return [
        Envelope(
            ids[e.account_id, e.device_id],
            e.account_id,
            e.device_id,
            caller.account_id,
            caller.device_id,
            result.server_ms,
            e.type,
            e.content,
            e.franking_tag or b"",
            e.reporting_tag or b"",
            e.franking_key_id,
            result.request and e.account_id == recipient,
        )
        for e in envelopes
        if (e.account_id, e.device_id) not in result.dropped
    ]
