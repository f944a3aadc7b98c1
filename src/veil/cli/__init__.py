"""The ``veil`` command (ARCHITECTURE.md §2, the ``cli`` layer).

It sits on top of every other layer; :mod:`veil.cli.main` holds the entry point.
"""
