"""Reinitialization and subgroup branching (RFC 9420 §11.2, §11.3, §8.6, §12.4.3.1).

Both start a new group whose first Commit adds the members' new KeyPackages together with a
PreSharedKey proposal of a resumption PSK of the old group, and send them a Welcome whose
GroupSecrets name that PSK. The PSK's value is the old group's ``resumption_psk`` of the
epoch it names (§8.6); its ``psk_nonce`` is fresh, KDF.Nh bytes of the new group's suite
(§8.4, §11.3). Such a PreSharedKey proposal is valid in that Commit only
(``RFC9420-12.1.4-psk-usage`` everywhere else).

Creating (any member of the old group; errors are LocalError, caller misuse):

* :func:`reinit_group` -- after the Commit holding a ReInit (§11.2): the new group has the
  ReInit's group_id, version, cipher_suite and extensions; the PSK has usage ``reinit`` and
  names the old group and the epoch that Commit started (``old.epoch``); the members must
  be the old group's (``members_match``, default :func:`same_members`).
* :func:`branch_group` -- a subgroup (§11.3): same version and cipher suite as the old
  group, a new group id; the PSK has usage ``branch`` and names the old group's current
  epoch; every new leaf must match a leaf of the old group (``leaf_matches``, default
  :func:`same_identity`).
* :func:`found_group` -- the shared step (create the group, the first Commit, the Welcome),
  without the membership checks.

Joining (each failure a :class:`~veil.core.mls.errors.ValidationError`), after every check of
:func:`~veil.core.mls.group_join.join_checked` (which includes ``RFC9420-12.4.3.1-resumption-
epoch``: the new group's epoch is 1):

* :func:`join_reinit` -- the Welcome names a ``reinit`` PSK of the old group and of the epoch
  after the ReInit Commit (``RFC9420-12.4.3.1-reinit-psk``), that Commit held a ReInit
  (``RFC9420-12.4.3.1-reinit-commit``), the GroupContext's group_id, version, cipher_suite
  and extensions are the ReInit's (``RFC9420-12.4.3.1-reinit-group-id``, ``-reinit-version``,
  ``-reinit-cipher-suite``, ``-reinit-extensions``) and the members are the old group's
  (``RFC9420-12.4.3.1-reinit-members``);
* :func:`join_branch` -- the Welcome names a ``branch`` PSK of the old group
  (``RFC9420-12.4.3.1-branch-psk``), version and cipher suite are the old group's
  (``RFC9420-12.4.3.1-branch-version``, ``-branch-cipher-suite``) and every leaf matches a
  leaf of the old group (``RFC9420-12.4.3.1-branch-members``).

"According to the application" (§12.4.3.1): members are compared by credential identity
(:func:`credential_identity`); callers with an Authentication Service pass their own rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from veil.core.errors import LocalError
from veil.core.mls.errors import ValidationError
from veil.core.mls.group_commit import commit_items
from veil.core.mls.group_epoch import ResumptionPsk, merge
from veil.core.mls.group_join import KeyPackageBundle, join_checked, welcome_psk_lookup
from veil.core.mls.group_state import GroupState, create_group
from veil.core.mls.proposals_validate import ProposalItem
from veil.core.mls.structs.common import CredentialType, Extension, ProtocolVersion
from veil.core.mls.structs.framing import MLSMessage, Sender
from veil.core.mls.structs.group import GroupInfo, Welcome
from veil.core.mls.structs.key_package import KeyPackage
from veil.core.mls.structs.proposals import (
    Add,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    PSKType,
    ResumptionPSKUsage,
)
from veil.core.mls.structs.tree import LeafNode
from veil.core.mls.suite import suite
from veil.core.mls.tree import RatchetTree
from veil.core.rng import Rng

MembersMatch = Callable[[Sequence[LeafNode], Sequence[LeafNode]], bool]
"""``(old group's leaves, new group's leaves) -> same members?`` (reinit)."""

LeafMatch = Callable[[LeafNode, LeafNode], bool]
"""``(new leaf, old leaf) -> the same member?`` (branch)."""


def credential_identity(leaf: LeafNode) -> tuple[int, bytes]:
    """Who a leaf is: a basic credential's identity; any other credential as encoded."""
    cred = leaf.credential
    if cred.credential_type == CredentialType.BASIC:
        return (CredentialType.BASIC, cred.identity)
    return (int(cred.credential_type), cred.to_bytes())


def same_members(old: Sequence[LeafNode], new: Sequence[LeafNode]) -> bool:
    """The default reinit rule: the same credential identities, as multisets."""
    return Counter(map(credential_identity, old)) == Counter(map(credential_identity, new))


def same_identity(new: LeafNode, old: LeafNode) -> bool:
    """The default branch rule: a new leaf matches an old one of the same identity."""
    return credential_identity(new) == credential_identity(old)


@dataclass(frozen=True, slots=True)
class ResumedGroup:
    """The creator's side of a new group: its state at epoch 1 (the first Commit is merged:
    nobody else is in the group to race it), the Welcome for the others (None if there are
    none) and the signed GroupInfo."""

    state: GroupState
    welcome: MLSMessage | None
    group_info: GroupInfo


def _leaves(state: GroupState) -> list[LeafNode]:
    return [leaf for _, leaf in state.members()]


def found_group(
    cipher_suite: int,
    group_id: bytes,
    own: KeyPackageBundle,
    key_packages: Sequence[KeyPackage],
    resumed: ResumptionPsk,
    rng: Rng,
    *,
    extensions: tuple[Extension, ...] = (),
    path: bool | None = None,
    now: int | None = None,
) -> ResumedGroup:
    """A new group (§11) of ``own`` whose first Commit adds ``key_packages`` with a
    PreSharedKey proposal of ``resumed`` (reinit or branch); no membership checks."""
    if own.key_package.cipher_suite != cipher_suite:
        raise LocalError("our KeyPackage is not in the new group's cipher suite")
    state = create_group(
        cipher_suite,
        group_id,
        own.key_package.leaf_node,
        own.encryption_priv,
        own.signature_priv,
        rng,
        extensions,
    )
    me = Sender.member(state.own_leaf)
    items = [ProposalItem(Proposal(Add(kp)), me) for kp in key_packages]
    items.append(ProposalItem(Proposal(PreSharedKey(resumed.psk_id)), me))
    result = commit_items(state, rng, items, path=path, now=now, resumed=resumed)
    return ResumedGroup(merge(result.staged), result.welcome, result.group_info)


def _resumption(old: GroupState, usage: ResumptionPSKUsage, nh: int, rng: Rng) -> ResumptionPsk:
    value = old.resumption_psk(old.epoch)
    if value is None:  # pragma: no cover - the current epoch's PSK is always kept
        raise LocalError("no resumption PSK for the current epoch")
    return ResumptionPsk(PreSharedKeyID.resumption(usage, old.group_id, old.epoch, rng(nh)), value)


def reinit_group(
    old: GroupState,
    own: KeyPackageBundle,
    key_packages: Sequence[KeyPackage],
    rng: Rng,
    *,
    members_match: MembersMatch = same_members,
    path: bool | None = None,
    now: int | None = None,
) -> ResumedGroup:
    """§11.2 step 3: the group that replaces ``old`` (closed by a ReInit Commit), with the
    other members' new KeyPackages (in the ReInit's cipher suite)."""
    reinit = old.reinit
    if reinit is None:
        raise LocalError("RFC9420-11.2: the group was not closed by a ReInit Commit")
    if reinit.version != ProtocolVersion.MLS10:
        raise LocalError(f"unsupported protocol version {reinit.version}")
    new_leaves = [own.key_package.leaf_node, *(kp.leaf_node for kp in key_packages)]
    if not members_match(_leaves(old), new_leaves):
        raise LocalError("RFC9420-11.2: the new members are not the old group's members")
    resumed = _resumption(old, ResumptionPSKUsage.REINIT, suite(reinit.cipher_suite).nh, rng)
    return found_group(
        reinit.cipher_suite,
        reinit.group_id,
        own,
        key_packages,
        resumed,
        rng,
        extensions=reinit.extensions,
        path=path,
        now=now,
    )


def branch_group(
    old: GroupState,
    own: KeyPackageBundle,
    key_packages: Sequence[KeyPackage],
    group_id: bytes,
    rng: Rng,
    *,
    extensions: tuple[Extension, ...] = (),
    leaf_matches: LeafMatch = same_identity,
    path: bool | None = None,
    now: int | None = None,
) -> ResumedGroup:
    """§11.3: a subgroup of ``old`` with new KeyPackages of some of its members."""
    old_leaves = _leaves(old)
    for kp in (own.key_package, *key_packages):
        if not any(leaf_matches(kp.leaf_node, leaf) for leaf in old_leaves):
            raise LocalError("RFC9420-11.3: a new member is not a member of the old group")
    resumed = _resumption(old, ResumptionPSKUsage.BRANCH, old.suite.nh, rng)
    return found_group(
        old.context.cipher_suite,
        group_id,
        own,
        key_packages,
        resumed,
        rng,
        extensions=extensions,
        path=path,
        now=now,
    )


def _join_from(
    welcome: Welcome,
    bundle: KeyPackageBundle,
    old: GroupState,
    usage: ResumptionPSKUsage,
    ratchet_tree: RatchetTree | None,
    psks: Mapping[bytes, bytes] | None,
    now: int | None,
) -> tuple[GroupState, PreSharedKeyID | None]:
    """Join with the old group's resumption PSKs; returns the state and the Welcome's
    resumption PSK of ``usage`` (at most one, §12.4.3.1), if any."""

    def resumption(group_id: bytes, epoch: int) -> bytes | None:
        return old.resumption_psk(epoch) if group_id == old.group_id else None

    lookup = welcome_psk_lookup(psks, resumption)
    state, joined = join_checked(welcome, bundle, ratchet_tree, lookup, now)
    named = [
        p for p in joined.group_secrets.psks if p.psktype == PSKType.RESUMPTION and p.usage == usage
    ]
    return state, (named[0] if named else None)


def join_reinit(
    welcome: Welcome,
    bundle: KeyPackageBundle,
    old: GroupState,
    ratchet_tree: RatchetTree | None = None,
    psks: Mapping[bytes, bytes] | None = None,
    now: int | None = None,
    *,
    members_match: MembersMatch = same_members,
) -> GroupState:
    """Join the group that replaces ``old`` (our state after the ReInit Commit) from its
    Welcome, with the §12.4.3.1 checks for usage reinit (see the module docstring)."""
    state, psk = _join_from(
        welcome, bundle, old, ResumptionPSKUsage.REINIT, ratchet_tree, psks, now
    )
    if psk is None or psk.psk_group_id != old.group_id or psk.psk_epoch != old.epoch:
        raise ValidationError("RFC9420-12.4.3.1-reinit-psk", "no reinit PSK of the old group")
    reinit = old.reinit
    if reinit is None:
        raise ValidationError("RFC9420-12.4.3.1-reinit-commit", "the old group had no ReInit")
    ctx = state.context
    if ctx.group_id != reinit.group_id:
        raise ValidationError("RFC9420-12.4.3.1-reinit-group-id")
    if ctx.version != reinit.version:
        raise ValidationError("RFC9420-12.4.3.1-reinit-version")
    if ctx.cipher_suite != reinit.cipher_suite:
        raise ValidationError("RFC9420-12.4.3.1-reinit-cipher-suite")
    if ctx.extensions != reinit.extensions:
        raise ValidationError("RFC9420-12.4.3.1-reinit-extensions")
    if not members_match(_leaves(old), _leaves(state)):
        raise ValidationError("RFC9420-12.4.3.1-reinit-members")
    return state


def join_branch(
    welcome: Welcome,
    bundle: KeyPackageBundle,
    old: GroupState,
    ratchet_tree: RatchetTree | None = None,
    psks: Mapping[bytes, bytes] | None = None,
    now: int | None = None,
    *,
    leaf_matches: LeafMatch = same_identity,
) -> GroupState:
    """Join a subgroup branched from ``old`` from its Welcome, with the §12.4.3.1 checks for
    usage branch (see the module docstring)."""
    state, psk = _join_from(
        welcome, bundle, old, ResumptionPSKUsage.BRANCH, ratchet_tree, psks, now
    )
    if psk is None or psk.psk_group_id != old.group_id:
        raise ValidationError("RFC9420-12.4.3.1-branch-psk", "no branch PSK of the old group")
    if state.context.version != old.context.version:
        raise ValidationError("RFC9420-12.4.3.1-branch-version")
    if state.context.cipher_suite != old.context.cipher_suite:
        raise ValidationError("RFC9420-12.4.3.1-branch-cipher-suite")
    old_leaves = _leaves(old)
    for index, leaf in state.members():
        if not any(leaf_matches(leaf, o) for o in old_leaves):
            raise ValidationError("RFC9420-12.4.3.1-branch-members", f"leaf {index}")
    return state
