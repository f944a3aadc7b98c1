"""Veil's sans-I/O protocol core.

Synchronous and deterministic: no network, no database, no clock and no randomness of its
own. Callers pass an :data:`~veil.core.rng.Rng` and the current time (ARCHITECTURE.md §2, rule 1).
"""
