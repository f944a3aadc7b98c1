"""A model-based test of an MLS group (RFC 9420 §12): N members (2 to 8) add (by Welcome,
with or without the ratchet_tree extension), join by external Commit, remove, update and
commit in random order (each Commit by a random member, public or private, delivered to all
the others), send application messages and receive them out of order.

Invariants: every member agrees on the epoch, the epoch authenticator, the tree hash and the
exporter output (§8.5, §8.7); every application message decrypts at every other member of
its epoch, with the right sender and content.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from veil.core.mls import group as g
from veil.core.mls.group_state import GroupState
from veil.core.mls.structs.common import Credential, Lifetime
from veil.core.mls.structs.framing import MLSMessage
from veil.core.mls.structs.group import Welcome
from veil.core.mls.structs.proposals import Add, Proposal, Remove
from veil.core.mls.suite import suite
from veil.core.mls.tree_hash import tree_hash
from veil.core.rng import seeded_rng

SUITE = 1
S = suite(SUITE)
LIFETIME = Lifetime(0, 2**63)
MAX_MEMBERS = 8

picks = st.integers(min_value=0, max_value=10**6)


@dataclass
class Pending:
    """An application message not yet delivered to ``recipient``."""

    recipient: int
    sender: int
    data: bytes
    message: MLSMessage


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rng = seeded_rng(b"group-machine")
        self.counter = 0
        self.members: dict[int, GroupState] = {}
        self.pending: list[Pending] = []
        founder = self._device()
        leaf = founder.key_package.leaf_node
        state = g.create_group(
            SUITE, b"machine", leaf, founder.encryption_priv, founder.signature_priv, self.rng
        )
        self.next_id = 0
        self.members[self._new_id()] = state
        self._add_one(0, with_tree=True)

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _device(self) -> g.KeyPackageBundle:
        self.counter += 1
        sig, _ = S.generate_signature_key(self.rng)
        name = f"device-{self.counter}".encode()
        return g.create_key_package(SUITE, Credential.basic(name), sig, LIFETIME, self.rng)

    def _pick(self, n: int, exclude: int | None = None) -> int:
        ids = sorted(i for i in self.members if i != exclude)
        return ids[n % len(ids)]

    def _flush(self) -> None:
        """Deliver every pending application message before the epoch changes."""
        while self.pending:
            self._deliver(self.pending.pop())

    def _deliver(self, item: Pending) -> None:
        got, new_state = g.decrypt(self.members[item.recipient], item.message)
        assert got.data == item.data
        assert got.sender == self.members[item.sender].own_leaf
        self.members[item.recipient] = new_state

    def _commit(self, committer: int, proposals: list[Proposal], private: bool) -> g.CommitResult:
        self._flush()
        result = g.commit(self.members[committer], self.rng, proposals, private=private)
        for member, state in list(self.members.items()):
            if member == committer:
                self.members[member] = g.merge(result.staged)
                continue
            staged = g.process_commit(state, result.message)
            if staged.removed:
                del self.members[member]
            else:
                self.members[member] = g.merge(staged)
        return result

    def _add_one(self, committer: int, with_tree: bool) -> None:
        bundle = self._device()
        self._flush()
        proposal = Proposal(Add(bundle.key_package))
        result = g.commit(
            self.members[committer], self.rng, [proposal], ratchet_tree_in_welcome=with_tree
        )
        for member, state in list(self.members.items()):
            if member == committer:
                self.members[member] = g.merge(result.staged)
            else:
                self.members[member] = g.merge(g.process_commit(state, result.message))
        assert result.welcome is not None
        welcome = result.welcome.body
        assert isinstance(welcome, Welcome)
        tree = None if with_tree else self.members[committer].tree
        self.members[self._new_id()] = g.join_welcome(welcome, bundle, ratchet_tree=tree)

    @precondition(lambda self: len(self.members) < MAX_MEMBERS)
    @rule(committer=picks, with_tree=st.booleans())
    def add(self, committer: int, with_tree: bool) -> None:
        self._add_one(self._pick(committer), with_tree)

    @precondition(lambda self: len(self.members) > 2)
    @rule(committer=picks, victim_pick=picks, private=st.booleans())
    def remove(self, committer: int, victim_pick: int, private: bool) -> None:
        who = self._pick(committer)
        victim = self._pick(victim_pick, exclude=who)
        leaf = self.members[victim].own_leaf
        self._commit(who, [Proposal(Remove(leaf))], private)
        assert victim not in self.members

    @rule(proposer=picks, committer=picks, private=st.booleans())
    def update(self, proposer: int, committer: int, private: bool) -> None:
        self._flush()
        who = self._pick(proposer)
        message, self.members[who] = g.propose_update(self.members[who], self.rng, private=private)
        for member, state in list(self.members.items()):
            if member != who:
                _, self.members[member] = g.process_proposal(state, message)
        self._commit(self._pick(committer, exclude=who), [], private)

    @rule(committer=picks, private=st.booleans())
    def commit_empty(self, committer: int, private: bool) -> None:
        self._commit(self._pick(committer), [], private)

    @precondition(lambda self: len(self.members) < MAX_MEMBERS)
    @rule(publisher=picks, with_tree=st.booleans())
    def external_join(self, publisher: int, with_tree: bool) -> None:
        self._flush()
        state = self.members[self._pick(publisher)]
        info = g.signed_group_info(state, self.rng, with_tree=with_tree)
        bundle = self._device()
        tree = None if with_tree else state.tree
        message, joined = g.join_external(
            info, bundle.key_package.leaf_node, bundle.signature_priv, self.rng, tree
        )
        for member, current in list(self.members.items()):
            self.members[member] = g.merge(g.process_commit(current, message))
        self.members[self._new_id()] = joined

    @rule(sender=picks, data=st.binary(max_size=40))
    def send(self, sender: int, data: bytes) -> None:
        who = self._pick(sender)
        message, self.members[who] = g.encrypt_application(self.members[who], data, b"", self.rng)
        for member in self.members:
            if member != who:
                self.pending.append(Pending(member, who, data, message))

    @precondition(lambda self: bool(self.pending))
    @rule(index=picks)
    def receive(self, index: int) -> None:
        self._deliver(self.pending.pop(index % len(self.pending)))

    @invariant()
    def members_agree(self) -> None:
        states = list(self.members.values())
        first = states[0]
        for state in states:
            assert state.epoch == first.epoch
            assert state.epoch_authenticator == first.epoch_authenticator
            assert tree_hash(state.tree, S) == first.context.tree_hash
            assert state.export_secret(b"check", b"", 16) == first.export_secret(b"check", b"", 16)
        leaves = sorted(s.own_leaf for s in states)
        assert leaves == [i for i, _ in first.members()]


GroupMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGroupMachine = GroupMachine.TestCase
