"""The store's one error type (ARCHITECTURE.md §6.3).

:class:`StoreError` covers a database that cannot be used (corrupt, not a database, written by
a newer Veil) and misuse of :class:`~veil.store.DeviceStore` (a nested transaction, a closed
store, a value outside its domain). Its message names the file or the offending field, never a
key, credential or message text.
"""

from __future__ import annotations

from veil.core.errors import VeilError


class StoreError(VeilError):
    """The device store cannot do what was asked; the message names the file, never a secret."""
