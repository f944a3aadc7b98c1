"""One device profile's persistent state: :class:`DeviceStore` (docs/client-design.md).

Synchronous (the engine calls it between protocol steps); one SQLite file,
``profile/device.db``, per device profile. The parts live in their own modules:
:mod:`~veil.store.keys` (account, prekeys), :mod:`~veil.store.peers` (sessions, identities,
contacts), :mod:`~veil.store.messages`, :mod:`~veil.store.delivery` (envelope dedupe,
outbox); :mod:`~veil.store.base` holds the transaction discipline and
:mod:`~veil.store.schema` the file handling and migrations.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from veil.store.conversations import ConversationStore
from veil.store.delivery import DeliveryStore
from veil.store.keys import KeyStore
from veil.store.messages import MessageStore
from veil.store.peers import PeerStore
from veil.store.schema import DB_NAME, connect, schema_version


class DeviceStore(KeyStore, PeerStore, MessageStore, DeliveryStore, ConversationStore):
    """A device profile's state in SQLite; see the module docstring for the parts.

    Every method runs inside the caller's :meth:`transaction` if there is one, else in a
    transaction of its own. Usable as a context manager (closes on exit).
    """

    @staticmethod
    def exists(profile: Path) -> bool:
        """Whether ``profile`` holds a device store (without creating anything)."""
        return (profile / DB_NAME).is_file()

    @classmethod
    def open(cls, profile: Path) -> DeviceStore:
        """Open the profile folder, creating it (``0700``) and ``device.db`` (``0600``).

        The database runs in WAL mode with ``synchronous=FULL`` and foreign keys on, and is
        migrated to the newest schema. Raises :class:`~veil.store.StoreError` for a file that
        is corrupt, not a Veil store, or written by a newer Veil.
        """
        profile = Path(profile)
        return cls(connect(profile), profile)

    def schema_version(self) -> int:
        """The schema version of the open database."""
        return schema_version(self._connection())

    def __enter__(self) -> DeviceStore:
        """The store itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()
