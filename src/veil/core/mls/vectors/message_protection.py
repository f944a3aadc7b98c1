"""``message-protection.json``: PublicMessage and PrivateMessage protection (RFC 9420 §6).

Each case: ``cipher_suite``; group context inputs ``group_id``, ``epoch``, ``tree_hash``,
``confirmed_transcript_hash`` (extensions empty); keys ``signature_priv``, ``signature_pub``,
``encryption_secret``, ``sender_data_secret``, ``membership_key``; payloads ``proposal``
(serialized Proposal), ``commit`` (serialized Commit), ``application`` (raw bytes), each with
protected forms ``*_pub`` (MLSMessage with a PublicMessage; none for application) and
``*_priv`` (MLSMessage with a PrivateMessage).

Check: a two-leaf secret tree from ``encryption_secret``, the sender is leaf 1. Unprotect
every ``*_pub`` (membership tag and signature) and ``*_priv`` and get the payload back; then
protect each payload ourselves (public and private) and unprotect our own output; protecting
an application message as a PublicMessage must fail, and a tampered message must be refused
without touching the secret tree.
"""

from __future__ import annotations

from veil.core.errors import LocalError, VeilError
from veil.core.mls import framing
from veil.core.mls.secret_tree import SecretTree
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.framing import (
    Content,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    WireFormat,
)
from veil.core.mls.structs.group import GroupContext
from veil.core.mls.structs.proposals import Proposal
from veil.core.mls.suite import CipherSuite
from veil.core.mls.vectors import Case
from veil.core.mls.vectors._util import suite_of
from veil.core.rng import seeded_rng

SENDER_LEAF = 1


class _Keys:
    def __init__(self, case: Case, cs: CipherSuite) -> None:
        def h(name: str) -> bytes:
            return bytes.fromhex(case[name])

        self.suite = cs
        self.context = GroupContext(
            cipher_suite=cs.id,
            group_id=h("group_id"),
            epoch=int(case["epoch"]),
            tree_hash=h("tree_hash"),
            confirmed_transcript_hash=h("confirmed_transcript_hash"),
        )
        self.sig_priv = h("signature_priv")
        self.sig_pub = h("signature_pub")
        self.encryption_secret = h("encryption_secret")
        self.sender_data_secret = h("sender_data_secret")
        self.membership_key = h("membership_key")

    def tree(self) -> SecretTree:
        return SecretTree(self.suite, self.encryption_secret, 2)

    def lookup(self, sender: Sender) -> bytes:
        assert sender == Sender.member(SENDER_LEAF), f"unexpected sender {sender}"
        return self.sig_pub


def _payloads(case: Case) -> dict[str, Content]:
    return {
        "proposal": Proposal.from_bytes(bytes.fromhex(case["proposal"])),
        "commit": Commit.from_bytes(bytes.fromhex(case["commit"])),
        "application": bytes.fromhex(case["application"]),
    }


def _unprotect(keys: _Keys, data: bytes, tree: SecretTree) -> Content:
    msg = MLSMessage.from_bytes(data)
    if isinstance(msg.body, PublicMessage):
        done = framing.unprotect_public(
            keys.suite, msg.body, keys.context, keys.membership_key, keys.lookup
        )
    else:
        assert isinstance(msg.body, PrivateMessage), f"unexpected {msg.wire_format!r}"
        done = framing.unprotect_private(
            keys.suite, msg.body, tree, keys.sender_data_secret, keys.context, keys.lookup
        )
        assert done.secret_tree is not None
    assert done.content.content.sender == Sender.member(SENDER_LEAF)
    return done.content.content.content


def _protect(keys: _Keys, payload: Content, wire_format: WireFormat, tree: SecretTree) -> bytes:
    ctx = keys.context
    framed = FramedContent(ctx.group_id, ctx.epoch, Sender.member(SENDER_LEAF), b"aad", payload)
    tag = keys.suite.mac(keys.membership_key, b"tag") if isinstance(payload, Commit) else None
    rng = seeded_rng(7)
    ac = framing.sign_content(keys.suite, keys.sig_priv, wire_format, framed, ctx, rng, tag)
    if wire_format == WireFormat.MLS_PUBLIC_MESSAGE:
        body = framing.protect_public(keys.suite, ac, ctx, keys.membership_key)
        return MLSMessage(body).to_bytes()
    priv = framing.protect_private(keys.suite, ac, tree, keys.sender_data_secret, rng, 3)
    return MLSMessage(priv).to_bytes()


def _check_tamper_leaves_tree(keys: _Keys, data: bytes) -> None:
    tree = keys.tree()
    before = repr(tree)
    bad = bytearray(data)
    bad[-1] ^= 1
    try:
        _unprotect(keys, bytes(bad), tree)
    except VeilError:
        pass
    else:
        raise AssertionError("a tampered PrivateMessage was accepted")
    assert repr(tree) == before, "a failed unprotect changed the secret tree"
    assert _unprotect(keys, data, tree) is not None


def check(case: Case) -> None:
    cs = suite_of(case)
    keys = _Keys(case, cs)
    payloads = _payloads(case)
    for name, payload in payloads.items():
        forms = ["priv"] if name == "application" else ["pub", "priv"]
        for form in forms:
            got = _unprotect(keys, bytes.fromhex(case[f"{name}_{form}"]), keys.tree())
            assert got == payload, f"{name}_{form}: payload differs"
        _check_tamper_leaves_tree(keys, bytes.fromhex(case[f"{name}_priv"]))
    sender_tree, receiver_tree = keys.tree(), keys.tree()
    for name, payload in payloads.items():
        wire_formats = [WireFormat.MLS_PRIVATE_MESSAGE]
        if name != "application":
            wire_formats.append(WireFormat.MLS_PUBLIC_MESSAGE)
        for wf in wire_formats:
            data = _protect(keys, payload, wf, sender_tree)
            got = _unprotect(keys, data, receiver_tree)
            assert got == payload, f"own {name} ({wf.name}) did not round-trip"
    try:
        _protect(keys, payloads["application"], WireFormat.MLS_PUBLIC_MESSAGE, sender_tree)
    except LocalError:
        pass
    else:
        raise AssertionError("an application message was protected as a PublicMessage")
