"""Versioned schema of the device store: ``NNNN_name.sql`` files in this folder.

``NNNN`` is the schema version a file brings the database to, counted from ``0001`` without
gaps. A file is applied once, in one transaction, and the version is then recorded in
``PRAGMA user_version`` inside that same transaction. Files are read through
:mod:`importlib.resources`, so they work from a wheel as well as from a source tree. A released
migration is never edited: a change of schema is a new file (the fixture test in
``tests/store`` compares the version-1 fixture against ``0001_init.sql``).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final, NamedTuple

_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class Migration(NamedTuple):
    """One schema step: the version it reaches, its name and its SQL script."""

    version: int
    name: str
    sql: str


def load() -> list[Migration]:
    """Every migration, by version.

    Raises :class:`ValueError` for a ``.sql`` file not named ``NNNN_name.sql`` or versions
    that are not exactly 1, 2, ... n (a packaging mistake, not a user error).
    """
    found: list[Migration] = []
    for entry in resources.files(__name__).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE.fullmatch(entry.name)
        if match is None:
            raise ValueError(f"store migration {entry.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"store migration versions must be 1..n without gaps: {versions}")
    return found


def latest() -> int:
    """The schema version this code writes."""
    return len(load())
