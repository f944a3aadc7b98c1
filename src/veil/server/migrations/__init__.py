"""Versioned schema migrations, one folder of plain SQL files per database dialect.

Layout: ``migrations/<dialect>/NNNN_name.sql`` (``sqlite``, ``postgres``), where ``NNNN`` is
the schema version the file brings the database to, counted from ``0001`` without gaps.
Files are read through :mod:`importlib.resources`, so they work from a wheel or a zip as well
as from a source tree. Applying them (one transaction per file, recording the version) is the
repository's job; this module only finds and checks them.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_DIALECT: Final = re.compile(r"^[a-z0-9_]+$")


def load(dialect: str) -> list[tuple[int, str, str]]:
    """The migrations of ``dialect`` as ``(version, name, sql)``, by version.

    Raises :class:`ValueError` for an unknown dialect, a ``.sql`` file whose name does not
    follow ``NNNN_name.sql``, or versions that are not exactly 1, 2, ... n.
    """
    if _DIALECT.fullmatch(dialect) is None:
        raise ValueError(f"bad migration dialect name {dialect!r}")
    folder = resources.files(__name__).joinpath(dialect)
    if not folder.is_dir():
        raise ValueError(f"no migrations for dialect {dialect!r}")
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE.fullmatch(entry.name)
        if match is None:
            raise ValueError(f"migration file {dialect}/{entry.name} is not named NNNN_name.sql")
        found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{dialect} migration versions must be 1..n without gaps: {versions}")
    return found
