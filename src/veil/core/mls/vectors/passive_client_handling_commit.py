"""``passive-client-handling-commit.json``: a passive client joins a group and follows it.

RFC 9420 §12.4.2 (processing Commits) and §12.4.3.1 (joining from a Welcome).

Format and check: see :mod:`veil.core.mls.vectors._passive` (the three passive-client
files share one shape: ``cipher_suite``, ``external_psks``, ``key_package``,
``signature_priv``, ``encryption_priv``, ``init_priv``, ``welcome``,
``ratchet_tree`` (or null), ``initial_epoch_authenticator`` and ``epochs`` of
``{proposals, commit, epoch_authenticator}``).
"""

from __future__ import annotations

from veil.core.mls.vectors import Case
from veil.core.mls.vectors._passive import run


def check(case: Case) -> None:
    run(case)
