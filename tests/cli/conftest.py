"""The TUI tests use the end-to-end fixtures: a real ``veil server`` process and two
registered people (``tests/`` is not a package: ``e2e`` is the top-level package pytest
puts on the path)."""

from e2e.conftest import People, VeilServer, people, veil_server

__all__ = ["People", "VeilServer", "people", "veil_server"]
