"""Veil: an end-to-end encrypted messenger.

Layers (see ARCHITECTURE.md §2): ``veil.core`` is the sans-I/O protocol core; the other
layers (wire, store, engine, client, server, cli) are built on top of it.
"""

__version__ = "0.1.0"
