"""The server's reporting secrets (message franking, :mod:`veil.core.franking`).

A reporting tag ``R = HMAC(Ks, context)`` is made with the *current* secret -- the newest row
of ``reporting_keys`` -- and names it by ``key_id``; a report is checked with the secret its
``key_id`` names, so a message delivered before a rotation still verifies after it. Secrets
are 32 bytes from ``os.urandom``, created when the first key is needed (or by
``veil admin rotate-reporting-key``) and never deleted.

:class:`ReportingKeys` caches them: :meth:`~ReportingKeys.current` is a plain attribute read
on the send path; :meth:`~ReportingKeys.refresh` re-reads the table (the sweeper calls it
every minute), so a rotation by another process or by the CLI is picked up within a minute.
Until then this process keeps tagging with the previous key, which stays valid. A secret
never appears in a ``repr``, a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Final

from veil.core.franking import MAX_KEY_ID, SECRET_LEN
from veil.server.report_store import ReportStore

log = logging.getLogger("veil.server.reporting")

REFRESH_INTERVAL_S: Final = 60.0


class ReportingKeys:
    """The reporting secrets of one database, cached in this process."""

    def __init__(
        self,
        store: ReportStore,
        now_ms: Callable[[], int],
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._store = store
        self._now_ms = now_ms
        self._random = random
        self._secrets: dict[int, bytes] = {}
        self._current: tuple[int, bytes] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        current = None if self._current is None else self._current[0]
        return f"ReportingKeys(current_key_id={current}, keys={len(self._secrets)})"

    @property
    def loaded(self) -> bool:
        """Whether :meth:`current` can answer (after :meth:`load`)."""
        return self._current is not None

    def current(self) -> tuple[int, bytes]:
        """``(key_id, secret)`` to tag new envelopes with (cached; see :meth:`refresh`)."""
        if self._current is None:
            raise RuntimeError("reporting keys not loaded: await load() first")
        return self._current

    async def load(self) -> tuple[int, bytes]:
        """Read the keys if not read yet (creating key 1 if there is none); the current one."""
        if self._current is None:
            async with self._lock:
                if self._current is None:
                    await self.refresh()
        return self.current()

    async def refresh(self) -> None:
        """Re-read every key from the database (creating key 1 if there is none)."""
        keys = await self._store.reporting_keys()
        if not keys:
            await self._store.add_first_reporting_key(self._new_secret(), self._now_ms())
            keys = await self._store.reporting_keys()
        self._secrets.update(keys)
        key_id, secret = max(keys)
        if self._current is not None and self._current[0] != key_id:
            log.info("reporting key %d is now current", key_id)
        self._current = (key_id, secret)

    async def secret(self, key_id: int) -> bytes | None:
        """The secret named ``key_id`` (from the database if this process has not seen it);
        None for an unknown key."""
        cached = self._secrets.get(key_id)
        if cached is not None or not 0 <= key_id <= MAX_KEY_ID:
            return cached
        secret = await self._store.reporting_key(key_id)
        if secret is not None:
            self._secrets[key_id] = secret
        return secret

    async def rotate(self) -> int:
        """Create a new secret, make it current here (other processes: at their next
        :meth:`refresh`); its key id."""
        key_id = await self._store.add_reporting_key(self._new_secret(), self._now_ms())
        await self.refresh()
        log.info("reporting key rotated: key %d created", key_id)
        return key_id

    def _new_secret(self) -> bytes:
        secret = self._random(SECRET_LEN)
        if len(secret) != SECRET_LEN:
            raise RuntimeError("the random source gave a short secret")
        return secret
