"""``key-schedule.json``: five epochs of the MLS key schedule per suite (RFC 9420 §8).

Each case: ``cipher_suite``, ``group_id``, ``initial_init_secret`` and ``epochs``, each with
inputs ``tree_hash``, ``commit_secret``, ``psk_secret``, ``confirmed_transcript_hash`` and
outputs ``group_context`` (encoded), ``joiner_secret``, ``welcome_secret``, ``init_secret``,
``sender_data_secret``, ``encryption_secret``, ``exporter_secret``, ``epoch_authenticator``,
``external_secret``, ``confirmation_key``, ``membership_key``, ``resumption_psk``,
``external_pub`` and ``exporter {label, context, length, secret}``.

Check: epoch n uses epoch number n and the previous ``init_secret`` (``initial_init_secret``
for epoch 0); the GroupContext is built here with the codec (version 1, empty extensions) and
must equal ``group_context``; every derived secret, ``external_pub`` from
DeriveKeyPair(external_secret), and MLS-Exporter are compared.

``exporter.label`` looks like hex, but the label is that text itself (its ASCII bytes), as in
the upstream description; decoding the hex gives a different secret. ``context`` is hex bytes.
"""

from __future__ import annotations

from veil.core.mls.codec import Writer
from veil.core.mls.key_schedule import EPOCH_LABELS, advance
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import h, suite_of


def group_context(
    suite_id: int, group_id: bytes, epoch: int, tree_hash: bytes, confirmed: bytes
) -> bytes:
    """An encoded GroupContext (§8.1) with empty extensions."""
    w = Writer()
    w.u16(1)
    w.u16(suite_id)
    w.opaque(group_id)
    w.u64(epoch)
    w.opaque(tree_hash)
    w.opaque(confirmed)
    w.opaque(b"")
    return w.getvalue()


def check(case: Case) -> None:
    s = suite_of(case)
    group_id = h(case["group_id"])
    init_secret = h(case["initial_init_secret"])
    for n, ep in enumerate(case["epochs"]):
        ctx = group_context(
            s.id, group_id, n, h(ep["tree_hash"]), h(ep["confirmed_transcript_hash"])
        )
        assert ctx == h(ep["group_context"]), f"epoch {n}: group_context"
        secrets = advance(s, init_secret, h(ep["commit_secret"]), h(ep["psk_secret"]), ctx)
        for name in ("joiner_secret", "welcome_secret", *EPOCH_LABELS):
            assert getattr(secrets, name) == h(ep[name]), f"epoch {n}: {name}"
        assert secrets.external_key_pair()[1] == h(ep["external_pub"]), f"epoch {n}: external"
        ex = ep["exporter"]
        got = secrets.exporter(ex["label"].encode(), h(ex["context"]), ex["length"])
        assert got == h(ex["secret"]), f"epoch {n}: exporter"
        init_secret = secrets.init_secret
