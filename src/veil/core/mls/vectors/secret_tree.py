"""``secret-tree.json``: the secret tree, its ratchets and sender-data keys (RFC 9420 §9, §6.3.2).

Each case: ``cipher_suite``, ``encryption_secret``, ``sender_data {sender_data_secret,
ciphertext, key, nonce}`` and ``leaves``: one array per leaf (1, 8 or 32 leaves) of
``{generation, handshake_key, handshake_nonce, application_key, application_nonce}``.

Check: the sender-data key/nonce from ``sender_data_secret`` and the first Nh bytes of
``ciphertext``; a secret tree with ``len(leaves)`` leaves rooted at ``encryption_secret``
gives, for every leaf and listed generation, those handshake and application keys/nonces.
They are asked for as a receiver would (skipping generations); a second tree, driven as a
sender with ``next_key``, must agree.
"""

from __future__ import annotations

from veil.core.mls.secret_tree import RatchetType, SecretTree, sender_data_key_nonce
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import h, suite_of


def check(case: Case) -> None:
    s = suite_of(case)
    sd = case["sender_data"]
    key, nonce = sender_data_key_nonce(s, h(sd["sender_data_secret"]), h(sd["ciphertext"]))
    assert (key, nonce) == (h(sd["key"]), h(sd["nonce"])), "sender data key/nonce"
    leaves = case["leaves"]
    receiver = SecretTree(s, h(case["encryption_secret"]), len(leaves))
    sender = SecretTree(s, h(case["encryption_secret"]), len(leaves))
    for leaf, entries in enumerate(leaves):
        for entry in entries:
            gen = entry["generation"]
            for kind, name in (
                (RatchetType.HANDSHAKE, "handshake"),
                (RatchetType.APPLICATION, "application"),
            ):
                want = (h(entry[f"{name}_key"]), h(entry[f"{name}_nonce"]))
                got = receiver.key_for(leaf, kind, gen)
                assert (got.generation, got.key, got.nonce) == (gen, *want), (
                    f"leaf {leaf} {name} {gen}"
                )
                ratchet = sender.ratchet(leaf, kind)
                while ratchet.generation < gen:
                    ratchet.next_key()
                sent = ratchet.next_key()
                assert (sent.key, sent.nonce) == want, f"sender leaf {leaf} {name} {gen}"
