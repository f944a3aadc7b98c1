"""What the parts of :class:`~veil.client.Client` (sending, receiving, the conversation rules)
may count on from the whole: its clock, randomness, store, engine, account and HTTP API.

Nothing here runs: the declarations only tell the type checker what ``Client`` provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from veil.core.rng import Rng

if TYPE_CHECKING:
    from veil.client.http import HttpApi
    from veil.engine import AccountRecord, Contact, DeviceStore, Engine


class ClientPart:
    """A part of :class:`~veil.client.Client` (a mixin); see the module docstring."""

    _rng: Rng
    _now_ms: Callable[[], int]

    if TYPE_CHECKING:

        @property
        def store(self) -> DeviceStore: ...
        @property
        def engine(self) -> Engine: ...
        @property
        def account(self) -> AccountRecord: ...
        def _api(self) -> HttpApi: ...
        async def resolve(self, who: str) -> Contact: ...
