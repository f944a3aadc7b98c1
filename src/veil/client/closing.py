"""``async with`` for the client's objects: enter (optionally starting), leave by ``close``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncClosing:
    """Mixin: ``async with x`` calls ``x._enter()`` (nothing by default) and ``x.close()``."""

    def _enter(self) -> None:
        """What entering does besides returning the object (e.g. open, start)."""

    async def close(self) -> None:
        """Release what the object holds (subclasses implement it)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
