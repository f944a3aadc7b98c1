"""The secret tree and its per-sender hash ratchets (RFC 9420 §9, §9.1, §9.2, §6.3.2).

:class:`SecretTree` starts from the epoch's ``encryption_secret`` at the root. Node secrets are
derived on demand, top-down (``ExpandWithLabel(., "tree", "left"|"right", Nh)``), and each
parent secret is deleted as soon as both children exist; a leaf secret is deleted once its two
ratchets (``"handshake"``, ``"application"``) are started. That is the deletion schedule of
§9.2: only the secrets still needed are kept.

Each :class:`HashRatchet` derives key, nonce and next secret per generation with
DeriveTreeSecret (§9.1). A sender takes :meth:`SecretTree.next_key`; a receiver asks for a
generation with :meth:`SecretTree.key_for`, which may jump ahead at most ``max_forward``
generations and keeps the skipped keys (at most ``max_skipped`` per ratchet, oldest dropped
first) for out-of-order messages. A key is handed out once, then forgotten; asking again is
a :class:`~veil.core.mls.errors.ValidationError`.

State changes only on success (ARCHITECTURE.md §6.2): every method that hands out a key
changes the tree, so a receiver works on :meth:`SecretTree.copy` and keeps the copy only if
the message decrypts.

:func:`sender_data_key_nonce` is the sender-data key and nonce of §6.3.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from veil.core.errors import LocalError
from veil.core.mls import tree_math as tm
from veil.core.mls.errors import ValidationError
from veil.core.mls.suite import CipherSuite

MAX_FORWARD = 1024
"""How many generations a receiver derives ahead of its ratchet at most."""
MAX_SKIPPED = 256
"""How many skipped (unused) keys one ratchet keeps for out-of-order messages."""
MAX_GENERATION = (1 << 32) - 1


class RatchetType(IntEnum):
    """The two ratchets of a leaf (§9): handshake (proposals, commits) and application."""

    HANDSHAKE = 0
    APPLICATION = 1

    @property
    def label(self) -> bytes:
        return b"handshake" if self is RatchetType.HANDSHAKE else b"application"


@dataclass(frozen=True, slots=True)
class KeyNonce:
    """The AEAD key and nonce of one generation of a ratchet."""

    generation: int
    key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)


@dataclass(slots=True)
class HashRatchet:
    """One sender ratchet (§9.1): ``secret`` is ratchet_secret_[generation]."""

    suite: CipherSuite = field(repr=False)
    secret: bytes = field(repr=False)
    generation: int = 0
    max_forward: int = MAX_FORWARD
    max_skipped: int = MAX_SKIPPED
    skipped: dict[int, KeyNonce] = field(default_factory=dict, repr=False)

    def copy(self) -> HashRatchet:
        return HashRatchet(
            self.suite,
            self.secret,
            self.generation,
            self.max_forward,
            self.max_skipped,
            dict(self.skipped),
        )

    def _step(self) -> KeyNonce:
        """Key and nonce of the current generation; the secret moves to the next one."""
        s, j = self.suite, self.generation
        if j >= MAX_GENERATION:
            raise LocalError("ratchet exhausted: generation would overflow uint32")
        out = KeyNonce(
            j,
            s.derive_tree_secret(self.secret, b"key", j, s.nk),
            s.derive_tree_secret(self.secret, b"nonce", j, s.nn),
        )
        self.secret = s.derive_tree_secret(self.secret, b"secret", j, s.nh)
        self.generation = j + 1
        return out

    def next_key(self) -> KeyNonce:
        """The sender's next key/nonce (each is used for one message only)."""
        return self._step()

    def key_for(self, generation: int) -> KeyNonce:
        """The key/nonce of ``generation`` for a receiver; consumed on return."""
        if generation < self.generation:
            kept = self.skipped.pop(generation, None)
            if kept is None:
                raise ValidationError(
                    "RFC9420-9.2-key-consumed",
                    f"generation {generation} was already used or dropped",
                )
            return kept
        if generation - self.generation > self.max_forward:
            raise ValidationError(
                "RFC9420-9.1-generation-too-far",
                f"generation {generation} is more than {self.max_forward} ahead",
            )
        while self.generation < generation:
            kn = self._step()
            self.skipped[kn.generation] = kn
        while len(self.skipped) > self.max_skipped:
            del self.skipped[min(self.skipped)]
        return self._step()


class SecretTree:
    """The secret tree of one epoch (§9) over ``n_leaves`` leaves (a power of two)."""

    __slots__ = ("_nodes", "_owned", "_ratchets", "max_forward", "max_skipped", "n_leaves", "suite")

    def __init__(
        self,
        suite: CipherSuite,
        encryption_secret: bytes,
        n_leaves: int,
        *,
        max_forward: int = MAX_FORWARD,
        max_skipped: int = MAX_SKIPPED,
    ) -> None:
        if n_leaves < 1 or n_leaves & (n_leaves - 1):
            raise LocalError("a secret tree has a power-of-two number of leaves")
        if len(encryption_secret) != suite.nh:
            raise LocalError(f"encryption_secret must be {suite.nh} bytes")
        self.suite = suite
        self.n_leaves = n_leaves
        self.max_forward = max_forward
        self.max_skipped = max_skipped
        self._nodes: dict[int, bytes] = {tm.root(n_leaves): encryption_secret}
        self._ratchets: dict[tuple[int, RatchetType], HashRatchet] = {}
        self._owned: set[tuple[int, RatchetType]] = set()
        """Ratchets no copy shares: only these may change in place (copy on write)."""

    def __repr__(self) -> str:
        return (
            f"SecretTree(suite={self.suite.id}, n_leaves={self.n_leaves}, "
            f"nodes={len(self._nodes)}, ratchets={len(self._ratchets)})"
        )

    def copy(self) -> SecretTree:
        """An independent copy: work on it, keep it only on success.

        The ratchets are shared until one side uses one (copy on write), so a copy costs two
        dictionary copies, not a copy of every ratchet and its skipped keys."""
        other = SecretTree.__new__(SecretTree)
        other.suite = self.suite
        other.n_leaves = self.n_leaves
        other.max_forward = self.max_forward
        other.max_skipped = self.max_skipped
        other._nodes = dict(self._nodes)
        other._ratchets = dict(self._ratchets)
        other._owned = set()
        self._owned = set()  # now shared with the copy
        return other

    def _start_leaf(self, leaf: int) -> None:
        """Derive the path down to ``leaf``, deleting each consumed node secret."""
        target = tm.leaf_node(leaf)
        x = tm.root(self.n_leaves)
        path = [x]
        while x != target:
            x = tm.left(x) if target < x else tm.right(x)
            path.append(x)
        start = max(i for i, node in enumerate(path) if node in self._nodes)
        s = self.suite
        for node in path[start:-1]:
            secret = self._nodes.pop(node)
            self._nodes[tm.left(node)] = s.expand_with_label(secret, b"tree", b"left", s.nh)
            self._nodes[tm.right(node)] = s.expand_with_label(secret, b"tree", b"right", s.nh)
        leaf_secret = self._nodes.pop(target)
        for kind in RatchetType:
            root = s.expand_with_label(leaf_secret, kind.label, b"", s.nh)
            self._ratchets[(leaf, kind)] = HashRatchet(
                s, root, max_forward=self.max_forward, max_skipped=self.max_skipped
            )
            self._owned.add((leaf, kind))

    def ratchet(self, leaf: int, kind: RatchetType) -> HashRatchet:
        """The ratchet of ``leaf`` (started on first use)."""
        if not 0 <= leaf < self.n_leaves:
            raise ValidationError("RFC9420-6.3.2-leaf-index", f"leaf {leaf} is not in the tree")
        key = (leaf, kind)
        if key not in self._ratchets:
            self._start_leaf(leaf)
        if key not in self._owned:
            self._ratchets[key] = self._ratchets[key].copy()
            self._owned.add(key)
        return self._ratchets[key]

    def next_key(self, leaf: int, kind: RatchetType) -> KeyNonce:
        """Our own next key/nonce as sender ``leaf``."""
        return self.ratchet(leaf, kind).next_key()

    def key_for(self, leaf: int, kind: RatchetType, generation: int) -> KeyNonce:
        """The key/nonce of a received message from ``leaf`` at ``generation``."""
        return self.ratchet(leaf, kind).key_for(generation)


def sender_data_key_nonce(
    suite: CipherSuite, sender_data_secret: bytes, ciphertext: bytes
) -> tuple[bytes, bytes]:
    """Sender-data key and nonce (§6.3.2) from the first Nh bytes of the content ciphertext."""
    sample = ciphertext[: suite.nh]
    key = suite.expand_with_label(sender_data_secret, b"key", sample, suite.nk)
    nonce = suite.expand_with_label(sender_data_secret, b"nonce", sample, suite.nn)
    return key, nonce
