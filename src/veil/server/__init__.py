"""The Veil server: accounts, devices, key directory, store-and-forward delivery.

It stores and forwards ciphertext it cannot read (ARCHITECTURE.md §2 rule 3: it imports only
``veil.wire`` and ``veil.core.crypto`` for signature checks, never the ratchet or MLS code).
Layers inside: routes -> services -> repositories (:mod:`veil.server.repository`), with an
SQLite implementation (the embedded default) and a PostgreSQL one (several processes).
"""
