"""``messages.json``: wire-format round trips of every MLS struct (RFC 9420).

No ``cipher_suite``. Each case holds one hex encoding per type: ``mls_welcome``,
``mls_group_info``, ``mls_key_package`` (MLSMessage wrappers), ``ratchet_tree`` (the
``optional<Node> nodes<V>`` extension body), ``group_secrets``, ``add_proposal``,
``update_proposal``, ``remove_proposal``, ``pre_shared_key_proposal``, ``re_init_proposal``,
``external_init_proposal``, ``group_context_extensions_proposal`` (the proposal bodies,
without the ProposalType), ``commit``, ``public_message_application``,
``public_message_proposal``, ``public_message_commit``, ``private_message`` (MLSMessages).
Check: decode each with the right struct and re-encode to identical bytes. Syntax only.
"""

from __future__ import annotations

from collections.abc import Callable

from veil.core.mls.structs.commit import Commit
from veil.core.mls.structs.framing import (
    ContentType,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
)
from veil.core.mls.structs.group import GroupInfo, GroupSecrets, Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    ReInit,
    Remove,
    Update,
)
from veil.core.mls.structs.tree import decode_ratchet_tree, encode_ratchet_tree
from veil.core.mls.vectors import Case


def _message(body_type: type, content_type: ContentType | None = None) -> Callable[[bytes], bytes]:
    def round_trip(data: bytes) -> bytes:
        msg = MLSMessage.from_bytes(data)
        assert isinstance(msg.body, body_type), f"{type(msg.body).__name__} is not {body_type}"
        if content_type is not None:
            assert isinstance(msg.body, PublicMessage)
            assert msg.body.content.content_type == content_type
        return msg.to_bytes()

    return round_trip


ROUND_TRIPS: dict[str, Callable[[bytes], bytes]] = {
    "mls_welcome": _message(Welcome),
    "mls_group_info": _message(GroupInfo),
    "mls_key_package": _message(KeyPackage),
    "ratchet_tree": lambda b: encode_ratchet_tree(decode_ratchet_tree(b)),
    "group_secrets": lambda b: GroupSecrets.from_bytes(b).to_bytes(),
    "add_proposal": lambda b: Add.from_bytes(b).to_bytes(),
    "update_proposal": lambda b: Update.from_bytes(b).to_bytes(),
    "remove_proposal": lambda b: Remove.from_bytes(b).to_bytes(),
    "pre_shared_key_proposal": lambda b: PreSharedKey.from_bytes(b).to_bytes(),
    "re_init_proposal": lambda b: ReInit.from_bytes(b).to_bytes(),
    "external_init_proposal": lambda b: ExternalInit.from_bytes(b).to_bytes(),
    "group_context_extensions_proposal": lambda b: GroupContextExtensions.from_bytes(b).to_bytes(),
    "commit": lambda b: Commit.from_bytes(b).to_bytes(),
    "public_message_application": _message(PublicMessage, ContentType.APPLICATION),
    "public_message_proposal": _message(PublicMessage, ContentType.PROPOSAL),
    "public_message_commit": _message(PublicMessage, ContentType.COMMIT),
    "private_message": _message(PrivateMessage),
}


def check(case: Case) -> None:
    missing = set(ROUND_TRIPS) - set(case)
    assert not missing, f"case lacks {sorted(missing)}"
    for name, round_trip in ROUND_TRIPS.items():
        data = bytes.fromhex(case[name])
        again = round_trip(data)
        assert again == data, f"{name}: re-encoding differs"
