"""RFC 9420 wire structs: Hypothesis round trips and strict decoding (§2.1, §6-§12)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import DecodeError, LocalError
from veil.core.mls.structs._base import WireStruct
from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.common import (
    Capabilities,
    Credential,
    Extension,
    ExtensionType,
    LeafNodeSource,
    decode_external_senders,
    encode_external_senders,
    find_extension,
)
from veil.core.mls.structs.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
)
from veil.core.mls.structs.group import GroupSecrets, PathSecret, Welcome
from veil.core.mls.structs.proposals import Proposal, ProposalType, Remove
from veil.core.mls.structs.tree import LeafNode, decode_ratchet_tree, encode_ratchet_tree

from . import strategies as strat

ROUND_TRIP_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "Extension": strat.extensions.filter(bool).map(lambda e: e[0]),
    "Credential": strat.credentials,
    "Capabilities": strat.capabilities,
    "Lifetime": strat.lifetimes,
    "HPKECiphertext": strat.hpke_ciphertexts,
    "RequiredCapabilities": strat.required_capabilities,
    "ExternalSender": strat.external_senders,
    "LeafNode": strat.leaf_nodes(),
    "ParentNode": strat.parent_nodes,
    "Node": strat.nodes,
    "UpdatePathNode": strat.update_path_nodes,
    "UpdatePath": strat.update_paths,
    "KeyPackage": strat.key_packages,
    "PreSharedKeyID": strat.psk_ids,
    "Proposal": strat.proposals,
    "ProposalOrRef": strat.proposal_or_refs,
    "Commit": strat.commits,
    "GroupContext": strat.group_contexts,
    "GroupInfo": strat.group_infos,
    "PathSecret": strat.path_secrets,
    "GroupSecrets": strat.group_secrets,
    "EncryptedGroupSecrets": strat.encrypted_group_secrets,
    "Welcome": strat.welcomes,
    "Sender": strat.senders,
    "FramedContent": strat.framed_contents,
    "PublicMessage": strat.public_messages(),
    "AuthenticatedContent": strat.authenticated_contents(),
    "PrivateMessage": strat.private_messages,
    "SenderData": strat.sender_data,
    "MLSMessage": strat.mls_messages,
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP_STRATEGIES))
def test_round_trip(name: str) -> None:
    @settings(max_examples=40, deadline=None)
    @given(ROUND_TRIP_STRATEGIES[name])
    def run(value: WireStruct) -> None:
        data = value.to_bytes()
        again = type(value).from_bytes(data)
        assert again == value
        assert again.to_bytes() == data

    run()


@settings(max_examples=40, deadline=None)
@given(strat.ratchet_trees)
def test_ratchet_tree_round_trip(tree: list[Any]) -> None:
    data = encode_ratchet_tree(tree)
    assert decode_ratchet_tree(data) == tree
    # bare LeafNode / ParentNode values encode like their Node wrappers
    bare = [None if n is None else n.value for n in tree]
    assert encode_ratchet_tree(bare) == data


@settings(max_examples=40, deadline=None)
@given(strat.private_message_contents())
def test_private_message_content_round_trip(pmc: PrivateMessageContent) -> None:
    ctype = AuthenticatedContent(
        WireFormat.MLS_PRIVATE_MESSAGE,
        FramedContent(b"", 0, Sender.member(0), b"", pmc.content),
        pmc.auth,
    ).content.content_type
    data = pmc.to_bytes()
    assert data.endswith(bytes(pmc.padding))
    assert PrivateMessageContent.from_bytes(data, ctype) == pmc


@settings(max_examples=30, deadline=None)
@given(st.lists(strat.external_senders, max_size=3))
def test_external_senders_round_trip(senders: list[Any]) -> None:
    assert decode_external_senders(encode_external_senders(senders)) == tuple(senders)


# --- real messages from the official vectors ---------------------------------------------


@pytest.fixture(scope="module")
def messages(vectors_dir: Path) -> list[dict[str, str]]:
    cases: list[dict[str, str]] = json.loads((vectors_dir / "mls" / "messages.json").read_text())
    return cases


REAL: list[tuple[str, Callable[[bytes], object]]] = [
    ("mls_welcome", MLSMessage.from_bytes),
    ("mls_group_info", MLSMessage.from_bytes),
    ("mls_key_package", MLSMessage.from_bytes),
    ("public_message_commit", MLSMessage.from_bytes),
    ("private_message", MLSMessage.from_bytes),
    ("ratchet_tree", decode_ratchet_tree),
    ("commit", Commit.from_bytes),
    ("group_secrets", GroupSecrets.from_bytes),
]


@pytest.mark.parametrize(("field", "parse"), REAL, ids=[f for f, _ in REAL])
def test_truncation_at_every_byte_raises_only_decode_error(
    messages: list[dict[str, str]], field: str, parse: Callable[[bytes], object]
) -> None:
    data = bytes.fromhex(messages[0][field])
    parse(data)
    step = max(1, len(data) // 400)
    for cut in [*range(0, len(data), step), len(data) - 1]:
        with pytest.raises(DecodeError):
            parse(data[:cut])


@pytest.mark.parametrize(("field", "parse"), REAL, ids=[f for f, _ in REAL])
def test_trailing_bytes_refused(
    messages: list[dict[str, str]], field: str, parse: Callable[[bytes], object]
) -> None:
    data = bytes.fromhex(messages[1][field])
    parse(data)
    for extra in (b"\x00", b"\x01\x02"):
        with pytest.raises(DecodeError, match="trailing"):
            parse(data + extra)


def test_real_public_message_fields(messages: list[dict[str, str]]) -> None:
    msg = MLSMessage.from_bytes(bytes.fromhex(messages[0]["public_message_commit"]))
    assert msg.wire_format == WireFormat.MLS_PUBLIC_MESSAGE
    assert isinstance(msg.body, PublicMessage)
    assert isinstance(msg.body.content.content, Commit)
    assert msg.body.auth.confirmation_tag is not None
    ac = msg.body.authenticated_content()
    assert ac.confirmed_transcript_hash_input().startswith(b"\x00\x01")


# --- hand-made encodings -------------------------------------------------------------------


def _remove_proposal_bytes() -> bytes:
    return Proposal(Remove(7)).to_bytes()


def test_remove_proposal_exact_bytes() -> None:
    assert _remove_proposal_bytes() == bytes.fromhex("000300000007")
    assert Proposal.from_bytes(bytes.fromhex("000300000007")).body == Remove(7)


def test_non_minimal_varint_refused() -> None:
    # Extension type 1, data "ab" with a 2-byte length header for 2 (non-minimal)
    good = bytes.fromhex("0001026162")
    assert Extension.from_bytes(good) == Extension(ExtensionType.APPLICATION_ID, b"ab")
    for bad in ("000140026162", "0001800000026162", "0001c00000026162"):
        with pytest.raises(DecodeError, match=r"variable-length|minimum"):
            Extension.from_bytes(bytes.fromhex(bad))


def test_optional_presence_byte_must_be_0_or_1() -> None:
    secrets = GroupSecrets(b"j" * 32, PathSecret(b"p" * 32), ())
    data = secrets.to_bytes()
    assert data[33] == 1
    with pytest.raises(DecodeError, match="presence byte 2"):
        GroupSecrets.from_bytes(data[:33] + b"\x02" + data[34:])
    no_path = GroupSecrets(b"j" * 32).to_bytes()
    assert GroupSecrets.from_bytes(no_path).path_secret is None


def test_unknown_extension_type_is_kept_and_re_encoded() -> None:
    data = bytes.fromhex("ff0a03010203")
    ext = Extension.from_bytes(data)
    assert ext.extension_type == 0xFF0A
    assert not isinstance(ext.extension_type, ExtensionType)
    assert ext.to_bytes() == data
    assert find_extension([ext], 0xFF0A) == b"\x01\x02\x03"
    assert find_extension([ext], ExtensionType.RATCHET_TREE) is None


def test_unknown_types_in_capabilities_are_kept() -> None:
    caps = Capabilities((1, 0x7777), (1, 0xF0F0), (0xAAAA,), (0xBBBB,), (0xCCCC, 1))
    assert Capabilities.from_bytes(caps.to_bytes()) == caps


@pytest.mark.parametrize(
    ("what", "data"),
    [
        ("credential type", "000300"),  # unknown credential type in a Credential
        ("credential type", "000000"),  # reserved
        ("proposal type", "000800000000"),  # unknown proposal type in a Proposal
        ("proposal type", "0000"),
    ],
)
def test_unknown_values_without_extensibility_refused(what: str, data: str) -> None:
    parse = Credential.from_bytes if what == "credential type" else Proposal.from_bytes
    with pytest.raises(DecodeError, match=what):
        parse(bytes.fromhex(data))


def test_unknown_wire_format_sender_and_version_refused() -> None:
    welcome = MLSMessage(Welcome(1, (), b"")).to_bytes()
    assert welcome[:4] == bytes.fromhex("00010003")
    assert MLSMessage.from_bytes(welcome).body == Welcome(1, (), b"")
    with pytest.raises(DecodeError, match="wire_format"):
        MLSMessage.from_bytes(welcome[:2] + b"\x00\x06" + welcome[4:])
    with pytest.raises(DecodeError, match="version"):
        MLSMessage.from_bytes(b"\x00\x02" + welcome[2:])
    content = FramedContent(b"g", 1, Sender(SenderType.MEMBER, 3), b"", b"hi").to_bytes()
    with pytest.raises(DecodeError, match="sender_type"):
        FramedContent.from_bytes(content[:10] + b"\x05" + content[11:])
    with pytest.raises(DecodeError, match="content_type"):
        FramedContent.from_bytes(content[:-4] + b"\x04" + content[-3:])


def _leaf(source: LeafNodeSource, **kw: Any) -> LeafNode:
    return LeafNode(b"e", b"s", Credential.basic(b"alice"), Capabilities(), source, **kw)


def test_leaf_source_selects_fields() -> None:
    with pytest.raises(LocalError):
        _leaf(LeafNodeSource.KEY_PACKAGE)
    leaf = _leaf(LeafNodeSource.COMMIT, parent_hash=b"ph")
    assert leaf.tbs(b"grp", 5).endswith(bytes.fromhex("0367727000000005"))
    assert leaf.tbs(b"grp", 5) != leaf.tbs(b"grp", 6)
    assert LeafNode.from_bytes(leaf.to_bytes()).parent_hash == b"ph"
    update = _leaf(LeafNodeSource.UPDATE)
    assert b"ph" not in update.to_bytes()


def test_padding_must_be_zero() -> None:
    pmc = PrivateMessageContent(b"hello", FramedContentAuthData(b"sig"), padding=5)
    data = pmc.to_bytes()
    assert PrivateMessageContent.from_bytes(data, ContentType.APPLICATION) == pmc
    with pytest.raises(DecodeError, match="padding"):
        PrivateMessageContent.from_bytes(data[:-1] + b"\x01", ContentType.APPLICATION)


def test_confirmation_tag_shape() -> None:
    auth = FramedContentAuthData(b"sig")
    auth.check_shape(ContentType.PROPOSAL)
    with pytest.raises(DecodeError):
        auth.check_shape(ContentType.COMMIT)
    with pytest.raises(DecodeError):
        FramedContentAuthData(b"sig", b"tag").check_shape(ContentType.APPLICATION)


def test_secrets_hidden_in_repr() -> None:
    secret = b"\x5a" * 32
    text = repr(GroupSecrets(secret, PathSecret(secret)))
    assert secret.hex() not in text and repr(secret) not in text
    assert "joiner_secret" not in text


def test_proposal_type_follows_body() -> None:
    assert Proposal(Remove(1)).proposal_type == ProposalType.REMOVE
