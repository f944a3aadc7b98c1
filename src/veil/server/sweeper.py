"""The periodic clean-up: expired provisioning mailboxes and codes, expired attachments,
envelopes left undelivered longer than the queue retention (``queue_retention_days``,
counted in ``veil_envelopes_expired_total`` and logged); and a re-read of the reporting keys
(a rotation by another process or the CLI).

Started by the app's lifespan (:func:`veil.server.app.create_app`); every server process runs
one, which is harmless (each deletion is idempotent). Expired data is never *served* before
the sweep either: every read checks the expiry itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from veil.server.attachments import AttachmentService
from veil.server.metrics import Metrics
from veil.server.reporting import ReportingKeys
from veil.server.repository import Repository

log = logging.getLogger("veil.server.sweeper")

SWEEP_INTERVAL_S: Final = 60.0
QUEUE_RETENTION_DAYS: Final = 30
"""Default: an envelope not delivered (acknowledged) within this many days is deleted."""
DAY_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep removed."""

    provisioning_rows: int
    attachments: int
    envelopes: int = 0
    """Envelopes older than the queue retention."""


class Sweeper:
    """Runs :meth:`sweep_once` every ``interval_s`` seconds until cancelled.

    ``queue_retention_ms`` and ``metrics`` are attributes the app sets after construction
    (its metrics are made later).
    """

    def __init__(
        self,
        repo: Repository,
        attachments: AttachmentService,
        now_ms: Callable[[], int],
        interval_s: float = SWEEP_INTERVAL_S,
        reporting: ReportingKeys | None = None,
    ) -> None:
        self.repo = repo
        self.reporting = reporting
        self.attachments = attachments
        self.now_ms = now_ms
        self.interval_s = interval_s
        self.queue_retention_ms = QUEUE_RETENTION_DAYS * DAY_MS
        self.metrics: Metrics | None = None

    async def sweep_once(self) -> SweepResult:
        """Remove everything expired now; re-read the reporting keys."""
        rows = await self.repo.purge_provisioning(self.now_ms())
        result = SweepResult(rows, await self.attachments.sweep(), await self.expire_envelopes())
        if self.reporting is not None:
            await self.reporting.refresh()
        return result

    async def expire_envelopes(self) -> int:
        """Delete the envelopes stored more than ``queue_retention_ms`` ago; count and log."""
        expired = await self.repo.expire_envelopes(self.now_ms() - self.queue_retention_ms)
        if expired:
            if self.metrics is not None:
                self.metrics.envelopes_expired(expired)
            days = self.queue_retention_ms / DAY_MS
            log.info("expired %d envelopes undelivered for %g days", expired, days)
        return expired

    async def run(self) -> None:
        """Sweep forever; a failed sweep is logged (type only) and retried next time."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep_once()
            except Exception as exc:
                log.warning("sweep failed: %s", type(exc).__name__)
