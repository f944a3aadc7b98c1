"""Message protection (RFC 9420 §6): PublicMessage and PrivateMessage, good and bad."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import DecodeError, LocalError
from veil.core.mls import framing
from veil.core.mls.errors import MlsDecryptError, ValidationError
from veil.core.mls.secret_tree import RatchetType, SecretTree, sender_data_key_nonce
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.framing import (
    AuthenticatedContent,
    Content,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    SenderType,
    WireFormat,
)
from veil.core.mls.structs.group import GroupContext
from veil.core.mls.structs.proposals import Proposal, Remove
from veil.core.mls.suite import CipherSuite, suite
from veil.core.rng import Rng, seeded_rng

PUB = WireFormat.MLS_PUBLIC_MESSAGE
APP = ContentType.APPLICATION
PRIV = WireFormat.MLS_PRIVATE_MESSAGE
SENDER = 2


@dataclass
class Group:
    cs: CipherSuite
    context: GroupContext
    sig_priv: bytes
    sig_pub: bytes
    encryption_secret: bytes
    sender_data_secret: bytes
    membership_key: bytes
    rng: Rng

    def tree(self) -> SecretTree:
        return SecretTree(self.cs, self.encryption_secret, 4)

    def lookup(self, sender: Sender) -> bytes:
        if sender.sender_type == SenderType.MEMBER and sender.index != SENDER:
            raise ValidationError("RFC9420-test-unknown-sender")
        return self.sig_pub

    def framed(self, content: Content, sender: Sender | None = None) -> FramedContent:
        sender = sender or Sender.member(SENDER)
        ctx = self.context
        return FramedContent(ctx.group_id, ctx.epoch, sender, b"ad", content)

    def sign(
        self, wf: WireFormat, content: Content, sender: Sender | None = None
    ) -> AuthenticatedContent:
        tag = b"\x07" * 32 if isinstance(content, Commit) else None
        framed = self.framed(content, sender)
        return framing.sign_content(self.cs, self.sig_priv, wf, framed, self.context, self.rng, tag)

    def public(self, content: Content, sender: Sender | None = None) -> PublicMessage:
        ac = self.sign(PUB, content, sender)
        return framing.protect_public(self.cs, ac, self.context, self.membership_key)

    def unprotect_public(self, msg: PublicMessage) -> AuthenticatedContent:
        done = framing.unprotect_public(
            self.cs, msg, self.context, self.membership_key, self.lookup
        )
        return done.content

    def private(self, content: Content, tree: SecretTree, padding: int = 0) -> PrivateMessage:
        ac = self.sign(PRIV, content)
        return framing.protect_private(
            self.cs, ac, tree, self.sender_data_secret, self.rng, padding
        )

    def unprotect_private(
        self, msg: PrivateMessage, tree: SecretTree
    ) -> tuple[AuthenticatedContent, SecretTree]:
        done = framing.unprotect_private(
            self.cs, msg, tree, self.sender_data_secret, self.context, self.lookup
        )
        assert done.secret_tree is not None
        return done.content, done.secret_tree


@pytest.fixture
def group(rng: Rng) -> Group:
    cs = suite(1)
    priv, pub = cs.generate_signature_key(rng)
    context = GroupContext(1, b"group", 5, b"\x01" * 32, b"\x02" * 32)
    return Group(cs, context, priv, pub, rng(32), rng(32), rng(32), rng)


PROPOSAL = Proposal(Remove(1))
COMMIT = Commit((), None)


# --- PublicMessage ------------------------------------------------------------------------


@pytest.mark.parametrize("content", [PROPOSAL, COMMIT], ids=["proposal", "commit"])
def test_public_round_trip(group: Group, content: Content) -> None:
    msg = group.public(content)
    assert msg.membership_tag is not None and len(msg.membership_tag) == 32
    wire = MLSMessage(msg).to_bytes()
    again = MLSMessage.from_bytes(wire).body
    assert isinstance(again, PublicMessage)
    ac = group.unprotect_public(again)
    assert ac.content.content == content
    assert ac.content.sender == Sender.member(SENDER)


def test_public_membership_tag_tampered(group: Group) -> None:
    msg = group.public(PROPOSAL)
    assert msg.membership_tag is not None
    bad = replace(msg, membership_tag=bytes([msg.membership_tag[0] ^ 1]) + msg.membership_tag[1:])
    with pytest.raises(ValidationError) as err:
        group.unprotect_public(bad)
    assert err.value.requirement == "RFC9420-6.2-membership-tag"


def test_public_membership_key_wrong(group: Group) -> None:
    msg = group.public(PROPOSAL)
    with pytest.raises(ValidationError, match="membership-tag"):
        framing.unprotect_public(group.cs, msg, group.context, b"\x00" * 32, group.lookup)


def test_public_signature_tampered(group: Group) -> None:
    msg = group.public(PROPOSAL)
    sig = bytearray(msg.auth.signature)
    sig[5] ^= 0x80
    auth = FramedContentAuthData(bytes(sig))
    # recompute the membership tag so only the signature is wrong
    ac = AuthenticatedContent(PUB, msg.content, auth)
    bad = framing.protect_public(group.cs, ac, group.context, group.membership_key)
    with pytest.raises(ValidationError) as err:
        group.unprotect_public(bad)
    assert err.value.requirement == "RFC9420-6.1-signature"


def test_public_signature_covers_group_context(group: Group) -> None:
    msg = group.public(PROPOSAL)
    other = replace(group.context, tree_hash=b"\x09" * 32)
    # the membership tag is checked first; both bind the context
    with pytest.raises(ValidationError):
        framing.unprotect_public(group.cs, msg, other, group.membership_key, group.lookup)


@pytest.mark.parametrize(
    ("field", "value", "requirement"),
    [("group_id", b"other", "RFC9420-6-group-id"), ("epoch", 6, "RFC9420-6-epoch")],
)
def test_public_wrong_group_or_epoch(
    group: Group, field: str, value: Any, requirement: str
) -> None:
    msg = group.public(PROPOSAL)
    bad = replace(msg, content=replace(msg.content, **{field: value}))
    with pytest.raises(ValidationError) as err:
        group.unprotect_public(bad)
    assert err.value.requirement == requirement


def test_application_as_public_message_refused(group: Group) -> None:
    ac = group.sign(PUB, b"hello")
    with pytest.raises(LocalError):
        framing.protect_public(group.cs, ac, group.context, group.membership_key)
    forged = PublicMessage(ac.content, ac.auth, b"\x00" * 32)
    with pytest.raises(ValidationError) as err:
        group.unprotect_public(forged)
    assert err.value.requirement == "RFC9420-6.2-application-not-public"


def test_external_sender_has_no_membership_tag(group: Group) -> None:
    msg = group.public(PROPOSAL, Sender(SenderType.EXTERNAL, 0))
    assert msg.membership_tag is None
    ac = group.unprotect_public(PublicMessage.from_bytes(msg.to_bytes()))
    assert ac.content.sender.sender_type == SenderType.EXTERNAL


def test_sign_content_confirmation_tag_rules(group: Group) -> None:
    framed = group.framed(COMMIT)
    with pytest.raises(LocalError):
        framing.sign_content(group.cs, group.sig_priv, PUB, framed, group.context, group.rng)
    with pytest.raises(LocalError):
        framing.sign_content(
            group.cs, group.sig_priv, PUB, group.framed(PROPOSAL), group.context, group.rng, b"t"
        )


def test_signed_for_other_wire_format_refused(group: Group) -> None:
    ac = group.sign(PRIV, PROPOSAL)
    with pytest.raises(LocalError):
        framing.protect_public(group.cs, ac, group.context, group.membership_key)
    with pytest.raises(LocalError):
        framing.protect_private(group.cs, group.sign(PUB, PROPOSAL), group.tree(), b"", group.rng)


# --- PrivateMessage -----------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"hello", PROPOSAL, COMMIT], ids=["app", "proposal", "commit"])
def test_private_round_trip(group: Group, content: Content) -> None:
    msg = group.private(content, group.tree(), padding=7)
    wire = MLSMessage(msg).to_bytes()
    again = MLSMessage.from_bytes(wire).body
    assert isinstance(again, PrivateMessage)
    ac, _ = group.unprotect_private(again, group.tree())
    assert ac.content.content == content
    assert ac.content.sender == Sender.member(SENDER)
    assert ac.wire_format == PRIV
    assert ac.content.authenticated_data == b"ad"


def test_private_sequence_out_of_order_and_replay(group: Group) -> None:
    sender_tree, receiver = group.tree(), group.tree()
    msgs = [group.private(f"m{i}".encode(), sender_tree) for i in range(3)]
    for i in (2, 0, 1):
        ac, receiver = group.unprotect_private(msgs[i], receiver)
        assert ac.content.content == f"m{i}".encode()
    with pytest.raises(ValidationError) as err:
        group.unprotect_private(msgs[1], receiver)
    assert err.value.requirement == "RFC9420-9.2-key-consumed"


def test_private_handshake_and_application_ratchets_are_separate(group: Group) -> None:
    tree = group.tree()
    group.private(b"app", tree)
    group.private(PROPOSAL, tree)
    assert tree.ratchet(SENDER, RatchetType.APPLICATION).generation == 1
    assert tree.ratchet(SENDER, RatchetType.HANDSHAKE).generation == 1


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 1
    return bytes(out)


@pytest.mark.parametrize("where", ["ciphertext", "sender_data", "authenticated_data"])
def test_private_tampering_leaves_tree_unchanged(group: Group, where: str) -> None:
    msg = group.private(b"secret text", group.tree())
    if where == "ciphertext":
        bad = replace(msg, ciphertext=_flip(msg.ciphertext, -1))
    elif where == "sender_data":
        bad = replace(msg, encrypted_sender_data=_flip(msg.encrypted_sender_data, 2))
    else:
        bad = replace(msg, authenticated_data=b"AD")
    receiver = group.tree()
    with pytest.raises(MlsDecryptError):
        group.unprotect_private(bad, receiver)
    # the same tree still has the key: nothing was consumed
    ac, _ = group.unprotect_private(msg, receiver)
    assert ac.content.content == b"secret text"


def test_private_wrong_signature_key(group: Group, rng: Rng) -> None:
    msg = group.private(PROPOSAL, group.tree())
    _, other_pub = group.cs.generate_signature_key(rng)
    receiver = group.tree()
    with pytest.raises(ValidationError) as err:
        framing.unprotect_private(
            group.cs, msg, receiver, group.sender_data_secret, group.context, lambda s: other_pub
        )
    assert err.value.requirement == "RFC9420-6.1-signature"
    ac, _ = group.unprotect_private(msg, receiver)
    assert ac.content.content == PROPOSAL


def test_private_wrong_epoch_refused(group: Group) -> None:
    msg = group.private(b"x", group.tree())
    with pytest.raises(ValidationError, match="epoch"):
        group.unprotect_private(replace(msg, epoch=msg.epoch + 1), group.tree())


def _encrypt_raw(group: Group, plaintext: bytes, leaf: int = SENDER) -> PrivateMessage:
    """A PrivateMessage whose content plaintext we choose freely (for malformed content)."""
    tree = group.tree()
    kn = tree.next_key(leaf, RatchetType.APPLICATION)
    shell = PrivateMessage(group.context.group_id, group.context.epoch, APP, b"", b"", b"")
    guard = b"\x00\x00\x00\x00"
    ct = group.cs.aead_encrypt(kn.key, kn.nonce, shell.content_aad(), plaintext)
    key, nonce = sender_data_key_nonce(group.cs, group.sender_data_secret, ct)
    sd = SenderData(leaf, kn.generation, guard).to_bytes()
    esd = group.cs.aead_encrypt(key, nonce, shell.sender_data_aad(), sd)
    return replace(shell, encrypted_sender_data=esd, ciphertext=ct)


def test_private_nonzero_padding_refused(group: Group) -> None:
    good = PrivateMessageContent(b"hi", FramedContentAuthData(b"s"), 4).to_bytes()
    msg = _encrypt_raw(group, good)
    # decrypts and parses, then fails only on the (fake) signature
    with pytest.raises(ValidationError, match="signature"):
        group.unprotect_private(msg, group.tree())
    with pytest.raises(DecodeError, match="padding"):
        group.unprotect_private(_encrypt_raw(group, good[:-1] + b"\x01"), group.tree())


def test_private_truncated_content_is_decode_error(group: Group) -> None:
    with pytest.raises(DecodeError):
        group.unprotect_private(_encrypt_raw(group, b"\x05abc"), group.tree())


def test_private_sender_leaf_out_of_range(group: Group) -> None:
    plaintext = PrivateMessageContent(b"hi", FramedContentAuthData(b"s")).to_bytes()
    msg = _encrypt_raw(group, plaintext)
    # rewrite the sender data with a leaf outside the 4-leaf tree
    key, nonce = sender_data_key_nonce(group.cs, group.sender_data_secret, msg.ciphertext)
    sd = SenderData(9, 0, b"\x00" * 4).to_bytes()
    esd = group.cs.aead_encrypt(key, nonce, msg.sender_data_aad(), sd)
    with pytest.raises(ValidationError) as err:
        group.unprotect_private(replace(msg, encrypted_sender_data=esd), group.tree())
    assert err.value.requirement == "RFC9420-6.3.2-leaf-index"


def test_reuse_guard_changes_the_nonce(group: Group) -> None:
    # two trees at the same generation with different rngs give different ciphertexts
    a = framing.protect_private(
        group.cs, group.sign(PRIV, b"same"), group.tree(), group.sender_data_secret, seeded_rng(1)
    )
    b = framing.protect_private(
        group.cs, group.sign(PRIV, b"same"), group.tree(), group.sender_data_secret, seeded_rng(2)
    )
    assert a.ciphertext != b.ciphertext


@settings(max_examples=15, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 64))
def test_private_application_round_trip_property(data: bytes, padding: int) -> None:
    cs = suite(1)
    rng = seeded_rng(data + bytes([padding]))
    priv, pub = cs.generate_signature_key(rng)
    context = GroupContext(1, b"g", 0, b"", b"")
    group = Group(cs, context, priv, pub, rng(32), rng(32), rng(32), rng)
    msg = group.private(data, group.tree(), padding)
    ac, _ = group.unprotect_private(PrivateMessage.from_bytes(msg.to_bytes()), group.tree())
    assert ac.content.content == data
