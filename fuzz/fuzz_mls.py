"""Fuzz the MLS (RFC 9420) wire decoders: every struct of ``veil.core.mls.structs``, the
ratchet-tree extension and the decrypted PrivateMessageContent. Parse or raise DecodeError;
whatever parses re-encodes to the same bytes (the decoders accept only canonical input).

.venv/bin/python fuzz/fuzz_mls.py -max_total_time=300
"""

from __future__ import annotations

import contextlib

from _harness import instrumented, run

with instrumented():
    from veil.core.errors import DecodeError
    from veil.core.mls.structs.commit import Commit
    from veil.core.mls.structs.common import (
        Capabilities,
        Credential,
        RequiredCapabilities,
        decode_external_senders,
        encode_external_senders,
    )
    from veil.core.mls.structs.framing import (
        AuthenticatedContent,
        ContentType,
        FramedContent,
        MLSMessage,
        PrivateMessageContent,
        SenderData,
    )
    from veil.core.mls.structs.group import GroupContext, GroupInfo, GroupSecrets, Welcome
    from veil.core.mls.structs.key_package import KeyPackage
    from veil.core.mls.structs.proposals import PreSharedKeyID, Proposal, ProposalOrRef
    from veil.core.mls.structs.tree import (
        LeafNode,
        Node,
        UpdatePath,
        decode_ratchet_tree,
        encode_ratchet_tree,
    )

STRUCTS = (
    MLSMessage,
    AuthenticatedContent,
    FramedContent,
    SenderData,
    KeyPackage,
    LeafNode,
    Node,
    UpdatePath,
    Proposal,
    ProposalOrRef,
    PreSharedKeyID,
    Commit,
    GroupContext,
    GroupInfo,
    GroupSecrets,
    Welcome,
    Credential,
    Capabilities,
    RequiredCapabilities,
)


def test_one_input(data: bytes) -> None:
    for struct in STRUCTS:
        with contextlib.suppress(DecodeError):
            value = struct.from_bytes(data)
            assert value.to_bytes() == data, f"{struct.__name__} is not canonical"
    with contextlib.suppress(DecodeError):
        tree = decode_ratchet_tree(data)
        assert encode_ratchet_tree(tree) == data, "ratchet_tree is not canonical"
    with contextlib.suppress(DecodeError):
        senders = decode_external_senders(data)
        assert encode_external_senders(senders) == data, "external_senders is not canonical"
    for content_type in ContentType:
        with contextlib.suppress(DecodeError):
            pmc = PrivateMessageContent.from_bytes(data, content_type)
            assert pmc.to_bytes() == data, "PrivateMessageContent is not canonical"


if __name__ == "__main__":
    run(test_one_input)
