"""Hypothesis strategies for every RFC 9420 wire struct in ``veil.core.mls.structs``.

The other MLS test modules import these. Values are syntactically valid (they encode), not
cryptographically valid: keys, signatures and MACs are random bytes.
"""

from __future__ import annotations

from typing import TypeVar

from hypothesis import strategies as st

from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.common import (
    Capabilities,
    Credential,
    CredentialType,
    Extension,
    ExternalSender,
    HPKECiphertext,
    LeafNodeSource,
    Lifetime,
    RequiredCapabilities,
)
from veil.core.mls.structs.framing import (
    AuthenticatedContent,
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
from veil.core.mls.structs.group import (
    EncryptedGroupSecrets,
    GroupContext,
    GroupInfo,
    GroupSecrets,
    PathSecret,
    Welcome,
)
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalOrRef,
    PSKType,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Update,
)
from veil.core.mls.structs.tree import (
    LeafNode,
    Node,
    ParentNode,
    UpdatePath,
    UpdatePathNode,
)

T = TypeVar("T")

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, (1 << 64) - 1)
small = st.binary(max_size=48)
keys = st.binary(min_size=0, max_size=66)


def tuples(strategy: st.SearchStrategy[T], max_size: int = 3) -> st.SearchStrategy[tuple[T, ...]]:
    return st.lists(strategy, max_size=max_size).map(tuple)


u16_lists = tuples(u16, 5)
extensions = tuples(st.builds(Extension, u16, small))
credentials = st.one_of(
    st.builds(Credential.basic, small),
    st.builds(Credential.x509, st.lists(small, max_size=3)),
)
capabilities = st.builds(Capabilities, u16_lists, u16_lists, u16_lists, u16_lists, u16_lists)
lifetimes = st.builds(Lifetime, u64, u64)
hpke_ciphertexts = st.builds(HPKECiphertext, keys, small)
required_capabilities = st.builds(RequiredCapabilities, u16_lists, u16_lists, u16_lists)
external_senders = st.builds(ExternalSender, keys, credentials)


@st.composite
def leaf_nodes(draw: st.DrawFn) -> LeafNode:
    source = draw(st.sampled_from(LeafNodeSource))
    return LeafNode(
        encryption_key=draw(keys),
        signature_key=draw(keys),
        credential=draw(credentials),
        capabilities=draw(capabilities),
        leaf_node_source=source,
        lifetime=draw(lifetimes) if source == LeafNodeSource.KEY_PACKAGE else None,
        parent_hash=draw(small) if source == LeafNodeSource.COMMIT else b"",
        extensions=draw(extensions),
        signature=draw(small),
    )


parent_nodes = st.builds(ParentNode, keys, small, tuples(u32, 4))
nodes = st.builds(Node, st.one_of(leaf_nodes(), parent_nodes))
ratchet_trees = st.lists(st.none() | nodes, max_size=7)
update_path_nodes = st.builds(UpdatePathNode, keys, tuples(hpke_ciphertexts))
update_paths = st.builds(UpdatePath, leaf_nodes(), tuples(update_path_nodes))
key_packages = st.builds(KeyPackage, u16, u16, keys, leaf_nodes(), extensions, small)

psk_ids = st.one_of(
    st.builds(PreSharedKeyID.external, small, small),
    st.builds(PreSharedKeyID.resumption, st.sampled_from(ResumptionPSKUsage), small, u64, small),
)
proposal_bodies = st.one_of(
    st.builds(Add, key_packages),
    st.builds(Update, leaf_nodes()),
    st.builds(Remove, u32),
    st.builds(PreSharedKey, psk_ids),
    st.builds(ReInit, small, u16, u16, extensions),
    st.builds(ExternalInit, keys),
    st.builds(GroupContextExtensions, extensions),
)
proposals = st.builds(Proposal, proposal_bodies)
proposal_or_refs = st.builds(ProposalOrRef, st.one_of(proposals, small))
commits = st.builds(Commit, tuples(proposal_or_refs), st.none() | update_paths)

group_contexts = st.builds(GroupContext, u16, small, u64, small, small, extensions, u16)
group_infos = st.builds(GroupInfo, group_contexts, extensions, small, u32, small)
path_secrets = st.builds(PathSecret, small)
group_secrets = st.builds(GroupSecrets, small, st.none() | path_secrets, tuples(psk_ids))
encrypted_group_secrets = st.builds(EncryptedGroupSecrets, small, hpke_ciphertexts)
welcomes = st.builds(Welcome, u16, tuples(encrypted_group_secrets), small)

senders = st.one_of(
    st.builds(Sender, st.sampled_from([SenderType.MEMBER, SenderType.EXTERNAL]), u32),
    st.builds(
        Sender, st.sampled_from([SenderType.NEW_MEMBER_PROPOSAL, SenderType.NEW_MEMBER_COMMIT])
    ),
)
contents = st.one_of(small, proposals, commits)
framed_contents = st.builds(FramedContent, small, u64, senders, small, contents)


def auth_for(content_type: ContentType) -> st.SearchStrategy[FramedContentAuthData]:
    tag = small if content_type == ContentType.COMMIT else st.none()
    return st.builds(FramedContentAuthData, small, tag)


@st.composite
def public_messages(draw: st.DrawFn) -> PublicMessage:
    content = draw(framed_contents)
    auth = draw(auth_for(content.content_type))
    tag = draw(small) if content.sender.sender_type == SenderType.MEMBER else None
    return PublicMessage(content, auth, tag)


@st.composite
def authenticated_contents(draw: st.DrawFn) -> AuthenticatedContent:
    content = draw(framed_contents)
    wire_format = draw(
        st.sampled_from([WireFormat.MLS_PUBLIC_MESSAGE, WireFormat.MLS_PRIVATE_MESSAGE])
    )
    return AuthenticatedContent(wire_format, content, draw(auth_for(content.content_type)))


@st.composite
def private_message_contents(draw: st.DrawFn) -> PrivateMessageContent:
    content = draw(contents)
    auth = draw(auth_for(FramedContent(b"", 0, Sender.member(0), b"", content).content_type))
    return PrivateMessageContent(content, auth, draw(st.integers(0, 40)))


private_messages = st.builds(
    PrivateMessage, small, u64, st.sampled_from(ContentType), small, small, small
)
sender_data = st.builds(SenderData, u32, u32, st.binary(min_size=4, max_size=4))
mls_messages = st.builds(
    MLSMessage,
    st.one_of(public_messages(), private_messages, welcomes, group_infos, key_packages),
)

credential_types = st.sampled_from(CredentialType)
psk_types = st.sampled_from(PSKType)
