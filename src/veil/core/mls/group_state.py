"""The state of one member in one epoch of an MLS group (RFC 9420 §8, §8.5, §11, §12).

:class:`GroupState` is an immutable value: every operation of :mod:`veil.core.mls.group`
returns a new one and leaves the old one as it was, so a failed step changes nothing
(ARCHITECTURE.md §6.2). It holds the cipher suite, the GroupContext (§8.1), the public
ratchet tree, our leaf index and private keys (leaf and path HPKE keys, signature key), the
epoch secrets (§8), the secret tree (§9, copied before every use), the interim transcript
hash (§8.2), the proposals cached in this epoch by ProposalRef (§5.2, §12.1), and the
resumption PSKs of the last :data:`RESUMPTION_PSKS_KEPT` epochs (§8.4).

:func:`create_group` starts a one-member group (§11). The secret tree is the only mutable
part; it is never changed in place: callers take :meth:`GroupState.secret_tree_copy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from veil.core.errors import LocalError
from veil.core.mls.errors import ValidationError
from veil.core.mls.key_schedule import EpochSecrets, from_joiner
from veil.core.mls.proposals_validate import check_context_extensions, external_senders
from veil.core.mls.secret_tree import SecretTree
from veil.core.mls.structs.common import Extension
from veil.core.mls.structs.framing import Sender, SenderType
from veil.core.mls.structs.group import GroupContext
from veil.core.mls.structs.proposals import Proposal, ReInit
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import CipherSuite, suite
from veil.core.mls.transcript import interim_transcript_hash
from veil.core.mls.tree import RatchetTree
from veil.core.mls.tree_hash import tree_hash
from veil.core.mls.treekem import TreeKeys
from veil.core.rng import Rng

RESUMPTION_PSKS_KEPT = 5
"""How many epochs' resumption PSKs a member keeps (§8.4 leaves the number to the client)."""


@dataclass(frozen=True, slots=True)
class CachedProposal:
    """A verified proposal of this epoch (§12.1), kept for Commits that refer to it."""

    ref: bytes
    proposal: Proposal
    sender: Sender


@dataclass(frozen=True, slots=True)
class GroupState:
    """One member's view of one epoch. Secrets never appear in ``repr``."""

    suite: CipherSuite = field(repr=False)
    context: GroupContext
    tree: RatchetTree = field(repr=False)
    own_leaf: int
    keys: TreeKeys = field(repr=False)
    signature_priv: bytes = field(repr=False)
    epoch_secrets: EpochSecrets = field(repr=False)
    secret_tree: SecretTree = field(repr=False)
    interim_transcript_hash: bytes = field(repr=False)
    confirmation_tag: bytes = field(repr=False)
    proposals: tuple[CachedProposal, ...] = field(default=(), repr=False)
    resumption_psks: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)
    """``(epoch, resumption_psk)`` of recent epochs of this group, newest last."""
    pending_updates: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)
    """``(ProposalRef, new leaf HPKE private key)`` of our own Update proposals."""
    reinit: ReInit | None = None
    """Set when the Commit that began this epoch held a ReInit (§12.4.2): the group must not
    be used to send anything any more; a new group replaces it."""

    def __repr__(self) -> str:
        return (
            f"GroupState(suite={self.suite.id}, group_id={self.context.group_id.hex()}, "
            f"epoch={self.epoch}, own_leaf={self.own_leaf}, members={self.tree.member_count()})"
        )

    def check_usable(self) -> None:
        """Refuse to send in a group that a ReInit Commit has closed (§12.4.2)."""
        if self.reinit is not None:
            raise LocalError("RFC9420-12.4.2-reinit: this group was reinitialized; use the new one")

    @property
    def group_id(self) -> bytes:
        return self.context.group_id

    @property
    def epoch(self) -> int:
        return self.context.epoch

    @property
    def epoch_authenticator(self) -> bytes:
        """§8.7: the epoch authenticator (compare out of band to detect a split view)."""
        return self.epoch_secrets.epoch_authenticator

    @property
    def own_leaf_node(self) -> LeafNode:
        leaf = self.tree.leaf_node(self.own_leaf)
        if leaf is None:  # pragma: no cover - a state always holds our own leaf
            raise LocalError("our own leaf is blank")
        return leaf

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        """MLS-Exporter(label, context, length) of this epoch (§8.5)."""
        return self.epoch_secrets.exporter(label, context, length)

    def members(self) -> Iterator[tuple[int, LeafNode]]:
        """``(leaf index, LeafNode)`` of every member, left to right."""
        return self.tree.leaves()

    def secret_tree_copy(self) -> SecretTree:
        """A private copy of the secret tree: use it, keep it only on success."""
        return self.secret_tree.copy()

    def resumption_psk(self, epoch: int) -> bytes | None:
        """The resumption PSK of a recent epoch of this group, if still kept."""
        for number, secret in self.resumption_psks:
            if number == epoch:
                return secret
        return None

    def find_proposal(self, ref: bytes) -> CachedProposal | None:
        for cached in self.proposals:
            if cached.ref == ref:
                return cached
        return None

    def signer_key(self, sender: Sender) -> bytes:
        """The signature public key of a member or external sender (§6.1, §12.1.8.1)."""
        if sender.sender_type == SenderType.MEMBER:
            if sender.index >= self.tree.n_leaves:
                raise ValidationError("RFC9420-6.1-sender-leaf", f"leaf {sender.index}")
            leaf = self.tree.leaf_node(sender.index)
            if leaf is None:
                raise ValidationError("RFC9420-6.1-sender-leaf", f"leaf {sender.index} blank")
            return leaf.signature_key
        if sender.sender_type == SenderType.EXTERNAL:
            senders = external_senders(self.context.extensions)
            if sender.index >= len(senders):
                raise ValidationError("RFC9420-12.1.8-external-sender-index")
            return senders[sender.index].signature_key
        raise ValidationError("RFC9420-6.1-sender-type", f"{int(sender.sender_type)}")


def keep_resumption(
    kept: tuple[tuple[int, bytes], ...], epoch: int, secret: bytes
) -> tuple[tuple[int, bytes], ...]:
    """The last :data:`RESUMPTION_PSKS_KEPT` resumption PSKs, with ``(epoch, secret)`` added."""
    return ((*kept, (epoch, secret)))[-RESUMPTION_PSKS_KEPT:]


def new_epoch_state(
    s: CipherSuite,
    context: GroupContext,
    tree: RatchetTree,
    own_leaf: int,
    keys: TreeKeys,
    signature_priv: bytes,
    secrets: EpochSecrets,
    confirmation_tag: bytes,
    resumption: tuple[tuple[int, bytes], ...] = (),
) -> GroupState:
    """A state at the start of an epoch: fresh secret tree, empty proposal cache."""
    return GroupState(
        suite=s,
        context=context,
        tree=tree,
        own_leaf=own_leaf,
        keys=prune_keys(keys, tree),
        signature_priv=signature_priv,
        epoch_secrets=secrets,
        secret_tree=SecretTree(s, secrets.encryption_secret, tree.n_leaves),
        interim_transcript_hash=interim_transcript_hash(
            s, context.confirmed_transcript_hash, confirmation_tag
        ),
        confirmation_tag=confirmation_tag,
        resumption_psks=keep_resumption(resumption, context.epoch, secrets.resumption_psk),
    )


def next_state(
    state: GroupState,
    context: GroupContext,
    tree: RatchetTree,
    keys: TreeKeys,
    secrets: EpochSecrets,
    confirmation_tag: bytes,
    reinit: ReInit | None,
) -> GroupState:
    """The member's state in the epoch a Commit starts (sent or received, §12.4)."""
    new = new_epoch_state(
        state.suite,
        context,
        tree,
        state.own_leaf,
        keys,
        state.signature_priv,
        secrets,
        confirmation_tag,
        state.resumption_psks,
    )
    return replace(new, reinit=reinit)


def prune_keys(keys: TreeKeys, tree: RatchetTree) -> TreeKeys:
    """Forget private keys of nodes that are now blank or outside the tree (§7.5 deletion)."""
    gone = [x for x in keys.private_keys if x >= tree.width or tree.nodes[x] is None]
    return keys.forget(gone) if gone else keys


def create_group(
    cipher_suite: int,
    group_id: bytes,
    leaf: LeafNode,
    encryption_priv: bytes,
    signature_priv: bytes,
    rng: Rng,
    extensions: tuple[Extension, ...] = (),
) -> GroupState:
    """A one-member group at epoch 0 (§11): random epoch secret, empty confirmed transcript."""
    s = suite(cipher_suite)
    if s.hpke_public(encryption_priv) != leaf.encryption_key:
        raise LocalError("encryption_priv does not match the leaf's encryption key")
    if s.signature_public(signature_priv) != leaf.signature_key:
        raise LocalError("signature_priv does not match the leaf's signature key")
    tree = RatchetTree.single(leaf)
    context = GroupContext(s.id, group_id, 0, tree_hash(tree, s), b"", tuple(extensions))
    check_context_extensions(tree, context.extensions)
    # §11: a fresh random epoch secret; from_joiner with a random "joiner" secret gives one.
    secrets = from_joiner(s, rng(s.nh), None, context.to_bytes())
    tag = secrets.confirmation_tag(b"")
    keys = TreeKeys.for_leaf(0, encryption_priv)
    return new_epoch_state(s, context, tree, 0, keys, signature_priv, secrets, tag)


def with_proposal(state: GroupState, cached: CachedProposal) -> GroupState:
    """The state with one more cached proposal (a duplicate ref is ignored)."""
    if state.find_proposal(cached.ref) is not None:
        return state
    return replace(state, proposals=(*state.proposals, cached))
