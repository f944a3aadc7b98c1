"""``psk_secret.json``: chaining pre-shared keys into psk_secret (RFC 9420 §8.4).

Each case: ``cipher_suite``, ``psks`` (0 to 10 entries ``{psk_id, psk, psk_nonce}``) and the
expected ``psk_secret``. Every entry is an external PSK (PreSharedKeyID with psktype
external, the given id and nonce); the chain of §8.4 must give ``psk_secret`` (Nh zero bytes
when the list is empty).
"""

from __future__ import annotations

from veil.core.mls.psk import Psk, external_psk_id, psk_secret
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import h, suite_of


def check(case: Case) -> None:
    s = suite_of(case)
    psks = [
        Psk(external_psk_id(h(p["psk_id"]), h(p["psk_nonce"])), h(p["psk"])) for p in case["psks"]
    ]
    assert psk_secret(s, psks) == h(case["psk_secret"]), f"psk_secret of {len(psks)} PSKs"
