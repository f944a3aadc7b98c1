"""The step from one epoch to the next, shared by committer and receivers (RFC 9420 §8,
§8.2, §8.3, §8.4, §12.4, §12.4.3).

* :class:`StagedCommit` -- a fully verified Commit waiting to be merged (§12.4.2 "if the
  above checks are successful"); :func:`merge` returns the new state. A Commit that removes
  us is staged with ``removed=True`` and no state.
* :func:`provisional_context` -- the GroupContext used to encrypt and decrypt path secrets.
* :func:`psk_secret_for` -- §8.4 over the committed PreSharedKeyIDs: external PSKs from the
  caller's mapping, resumption PSKs from the state (``RFC9420-12.4.2-psk-available``), and
  the :class:`ResumptionPsk` of another group that starts a reinitialized or branched group.
* :func:`external_init_secret` / :func:`external_init_receive` -- §8.3.
* :func:`next_epoch` -- transcript hashes and key schedule of the new epoch.
* :func:`signed_group_info` -- a GroupInfo of the current epoch (§12.4.3), with the
  ``ratchet_tree`` and ``external_pub`` extensions on request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from veil.core.crypto.hpke import HpkeDecryptError
from veil.core.errors import LocalError
from veil.core.mls.errors import ValidationError
from veil.core.mls.group_state import GroupState
from veil.core.mls.key_schedule import EpochSecrets, advance
from veil.core.mls.proposals_validate import Applied, ProposalItem
from veil.core.mls.psk import Psk, psk_secret
from veil.core.mls.structs.common import Extension, ExtensionType, ExternalPub
from veil.core.mls.structs.framing import AuthenticatedContent, Sender
from veil.core.mls.structs.group import GroupContext, GroupInfo
from veil.core.mls.structs.proposals import PreSharedKeyID, PSKType
from veil.core.mls.suite import CipherSuite
from veil.core.mls.transcript import confirmed_transcript_hash
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_hash import tree_hash
from veil.core.rng import Rng

EXTERNAL_INIT_LABEL = b"MLS 1.0 external init secret"


@dataclass(frozen=True, slots=True)
class StagedCommit:
    """A verified Commit. ``state`` is the next epoch's state (None if we were removed)."""

    committer: Sender
    proposals: tuple[ProposalItem, ...]
    applied: Applied = field(repr=False)
    state: GroupState | None = field(default=None, repr=False)
    removed: bool = False

    @property
    def added(self) -> tuple[int, ...]:
        """Leaf indices of the members this Commit adds."""
        return tuple(index for index, _ in self.applied.added)

    @property
    def removed_leaves(self) -> tuple[int, ...]:
        return self.applied.removed


def merge(staged: StagedCommit) -> GroupState:
    """The new epoch's state (§12.4.2). Refused for a Commit that removed us."""
    if staged.state is None:
        raise LocalError("this Commit removed us from the group: there is no next state")
    return staged.state


def provisional_context(
    state: GroupState, extensions: tuple[Extension, ...], new_tree_hash: bytes
) -> GroupContext:
    """§12.4.1-2: new epoch and tree hash, old confirmed transcript hash, new extensions."""
    c = state.context
    return GroupContext(
        c.cipher_suite,
        c.group_id,
        c.epoch + 1,
        new_tree_hash,
        c.confirmed_transcript_hash,
        extensions,
        c.version,
    )


@dataclass(frozen=True, slots=True)
class ResumptionPsk:
    """A reinit or branch resumption PSK (§8.6, §11.2, §11.3): its id (naming the old group
    and epoch) and its value, the old group's ``resumption_psk`` of that epoch."""

    psk_id: PreSharedKeyID
    value: bytes = field(repr=False)


def psk_secret_for(
    state: GroupState,
    ids: Sequence[PreSharedKeyID],
    psks: Mapping[bytes, bytes] | None,
    resumed: ResumptionPsk | None = None,
) -> bytes | None:
    """psk_secret (§8.4) of the committed PSKs, or None (all zero) if there are none."""
    if not ids:
        return None
    items = []
    for psk_id in ids:
        if resumed is not None and psk_id == resumed.psk_id:
            value: bytes | None = resumed.value
        else:
            value = psk_value(state.group_id, psk_id, psks, state.resumption_psk)
        if value is None:
            raise ValidationError("RFC9420-12.4.2-psk-available", f"type {int(psk_id.psktype)}")
        items.append(Psk.of(psk_id, value))
    return psk_secret(state.suite, items)


def psk_value(
    group_id: bytes,
    psk_id: PreSharedKeyID,
    psks: Mapping[bytes, bytes] | None,
    resumption: Callable[[int], bytes | None] | None = None,
) -> bytes | None:
    """The PSK named by ``psk_id``: external ones from ``psks``, resumption ones of this
    group from ``resumption(epoch)`` when given."""
    if psk_id.psktype == PSKType.EXTERNAL:
        return (psks or {}).get(psk_id.psk_id)
    if psk_id.psk_group_id == group_id and resumption is not None:
        return resumption(psk_id.psk_epoch)
    return None


def external_init_secret(s: CipherSuite, external_pub: bytes, rng: Rng) -> tuple[bytes, bytes]:
    """§8.3, joiner side: (kem_output, init_secret)."""
    kem_output, context = s.hpke.setup_base_s(external_pub, b"", rng)
    return kem_output, context.export(EXTERNAL_INIT_LABEL, s.nh)


def external_init_receive(state: GroupState, kem_output: bytes) -> bytes:
    """§8.3, member side: the init_secret from an ExternalInit's kem_output."""
    s = state.suite
    external_priv, _ = state.epoch_secrets.external_key_pair()
    try:
        context = s.hpke.setup_base_r(kem_output, external_priv, b"")
    except HpkeDecryptError:
        raise ValidationError("RFC9420-8.3-external-init", "bad kem_output") from None
    return context.export(EXTERNAL_INIT_LABEL, s.nh)


def next_epoch(
    s: CipherSuite,
    old_context: GroupContext,
    interim_before: bytes,
    init_secret: bytes,
    tree: RatchetTree,
    extensions: tuple[Extension, ...],
    ac: AuthenticatedContent,
    commit_secret: bytes | None,
    psk: bytes | None,
) -> tuple[GroupContext, EpochSecrets]:
    """§8.2 and §8: the new GroupContext and the new epoch's secrets."""
    confirmed = confirmed_transcript_hash(s, interim_before, ac.confirmed_transcript_hash_input())
    context = GroupContext(
        old_context.cipher_suite,
        old_context.group_id,
        old_context.epoch + 1,
        tree_hash(tree, s),
        confirmed,
        extensions,
        old_context.version,
    )
    secrets = advance(s, init_secret, commit_secret, psk, context.to_bytes())
    return context, secrets


def signed_group_info(
    state: GroupState,
    rng: Rng,
    with_tree: bool = True,
    with_external_pub: bool = True,
    extra: tuple[Extension, ...] = (),
) -> GroupInfo:
    """A GroupInfo of the current epoch signed by us (§12.4.3)."""
    extensions = list(extra)
    if with_tree:
        extensions.append(Extension(ExtensionType.RATCHET_TREE, state.tree.to_bytes()))
    if with_external_pub:
        _, pub = state.epoch_secrets.external_key_pair()
        extensions.append(Extension(ExtensionType.EXTERNAL_PUB, ExternalPub(pub).to_bytes()))
    info = GroupInfo(state.context, tuple(extensions), state.confirmation_tag, state.own_leaf)
    signature = state.suite.sign_with_label(state.signature_priv, b"GroupInfoTBS", info.tbs(), rng)
    return GroupInfo(
        info.group_context, info.extensions, info.confirmation_tag, info.signer, signature
    )
