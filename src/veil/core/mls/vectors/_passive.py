"""The passive-client vectors (shared by three runners): join from a Welcome, then follow
the group through its epochs (RFC 9420 §12.4.2, §12.4.3.1).

Case fields: ``cipher_suite``, ``external_psks`` (``[{psk_id, psk}]``), ``key_package``
(MLSMessage), ``signature_priv``, ``encryption_priv``, ``init_priv``, ``welcome``
(MLSMessage), ``ratchet_tree`` (serialized tree or null: then it is in the Welcome's
GroupInfo), ``initial_epoch_authenticator`` and ``epochs``: ``[{proposals: [MLSMessage],
commit: MLSMessage, epoch_authenticator}]``.

Check: the private keys match the KeyPackage; join; compare the epoch authenticator; for
each epoch, process the proposals, then the commit, merge, compare the epoch authenticator.
Before the first commit, the same commit with its last byte flipped must be refused (and the
state it was offered to must still process the genuine one).
"""

from __future__ import annotations

from veil.core.errors import RemoteError
from veil.core.mls.group_epoch import merge
from veil.core.mls.group_join import KeyPackageBundle, join_welcome
from veil.core.mls.group_process import process_commit, process_proposal
from veil.core.mls.group_state import GroupState
from veil.core.mls.structs.framing import MLSMessage
from veil.core.mls.structs.group import Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.tree import RatchetTree
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import h, suite_of


def join(case: Case) -> tuple[GroupState, dict[bytes, bytes]]:
    """Join the group of a case; returns the state and the external PSKs."""
    s = suite_of(case)
    kp = MLSMessage.from_bytes(h(case["key_package"])).body
    welcome = MLSMessage.from_bytes(h(case["welcome"])).body
    assert isinstance(kp, KeyPackage) and isinstance(welcome, Welcome), "message types"
    bundle = KeyPackageBundle(
        kp, h(case["init_priv"]), h(case["encryption_priv"]), h(case["signature_priv"])
    )
    assert s.hpke_public(bundle.init_priv) == kp.init_key, "init_priv"
    assert s.hpke_public(bundle.encryption_priv) == kp.leaf_node.encryption_key, "encryption_priv"
    assert s.signature_public(bundle.signature_priv) == kp.leaf_node.signature_key, "signature"
    psks = {h(p["psk_id"]): h(p["psk"]) for p in case["external_psks"]}
    tree = RatchetTree.from_bytes(h(case["ratchet_tree"])) if case["ratchet_tree"] else None
    state = join_welcome(welcome, bundle, tree, psks)
    assert state.epoch_authenticator == h(case["initial_epoch_authenticator"]), "initial auth"
    return state, psks


def _refuses_tampered(state: GroupState, commit: bytes, psks: dict[bytes, bytes]) -> None:
    """A commit with its last byte flipped (membership tag or ciphertext) is refused."""
    bad = commit[:-1] + bytes([commit[-1] ^ 1])
    try:
        process_commit(state, MLSMessage.from_bytes(bad), psks)
    except RemoteError:
        return
    raise AssertionError("a tampered commit was accepted")


def run(case: Case) -> None:
    state, psks = join(case)
    for number, epoch in enumerate(case["epochs"]):
        for proposal in epoch["proposals"]:
            _, state = process_proposal(state, MLSMessage.from_bytes(h(proposal)))
        if number == 0:
            _refuses_tampered(state, h(epoch["commit"]), psks)
        staged = process_commit(state, MLSMessage.from_bytes(h(epoch["commit"])), psks)
        state = merge(staged)
        expected = h(epoch["epoch_authenticator"])
        assert state.epoch_authenticator == expected, f"epoch authenticator of step {number}"
