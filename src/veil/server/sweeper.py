"""The periodic clean-up: expired provisioning mailboxes and codes, expired attachments.

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
from veil.server.repository import Repository

log = logging.getLogger("veil.server.sweeper")

SWEEP_INTERVAL_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep removed."""

    provisioning_rows: int
    attachments: int


class Sweeper:
    """Runs :meth:`sweep_once` every ``interval_s`` seconds until cancelled."""

    def __init__(
        self,
        repo: Repository,
        attachments: AttachmentService,
        now_ms: Callable[[], int],
        interval_s: float = SWEEP_INTERVAL_S,
    ) -> None:
        self.repo = repo
        self.attachments = attachments
        self.now_ms = now_ms
        self.interval_s = interval_s

    async def sweep_once(self) -> SweepResult:
        """Remove everything expired now."""
        rows = await self.repo.purge_provisioning(self.now_ms())
        return SweepResult(rows, await self.attachments.sweep())

    async def run(self) -> None:
        """Sweep forever; a failed sweep is logged (type only) and retried next time."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep_once()
            except Exception as exc:
                log.warning("sweep failed: %s", type(exc).__name__)
