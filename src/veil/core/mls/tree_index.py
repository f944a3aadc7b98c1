"""Counts over a ratchet tree's nodes, kept up to date as the tree evolves (RFC 9420 §7.3,
§12.2, §12.4.2, §16.8).

The checks a receiver runs on every Commit ask questions about the whole tree:

* §7.3 / §16.8: is this encryption key already in some node, this signature key already in
  some leaf? Does the tree hold any repeated key at all?
* §7.3: does every member support this credential type; which credential types are in use?

Scanning the tree answers them in O(n); a :class:`TreeIndex` answers them with dictionary
look-ups. It is a value derived from the nodes: :class:`~veil.core.mls.tree.RatchetTree`
builds it on first use and hands each derived tree an index updated with just the changed
nodes (:meth:`TreeIndex.changed`), so keeping it costs a copy of its dictionaries (C-level),
not a walk over the nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from veil.core.mls.structs.tree import LeafNode, ParentNode

TreeNode = LeafNode | ParentNode


def _bump(counts: dict[bytes, int], key: bytes, by: int) -> int:
    """Add ``by`` (±1) to ``counts[key]``; returns the change in repeated keys (+1 when a key
    goes from one holder to two, -1 when back from two to one)."""
    before = counts.get(key, 0)
    after = before + by
    if after:
        counts[key] = after
    else:
        del counts[key]
    if by > 0:
        return 1 if after == 2 else 0
    return -1 if before == 2 else 0


def _bump_int(counts: dict[int, int], key: int, by: int) -> None:
    after = counts.get(key, 0) + by
    if after:
        counts[key] = after
    else:
        del counts[key]


@dataclass(frozen=True, slots=True)
class TreeIndex:
    """How many nodes hold each key, and the credential types of the members.

    ``encryption_keys``: HPKE public key -> number of nodes (leaves and parents) holding it;
    ``signature_keys``: signature key -> number of leaves; ``credential_types``: credential
    type -> number of leaves using it; ``supported``: credential type -> number of leaves
    whose capabilities list it; ``members``: non-blank leaves; ``repeated``: keys held more
    than once (0 in a valid tree). Treated as immutable.
    """

    encryption_keys: dict[bytes, int]
    signature_keys: dict[bytes, int]
    credential_types: dict[int, int]
    supported: dict[int, int]
    members: int = 0
    repeated: int = 0

    @classmethod
    def build(cls, nodes: Iterable[TreeNode | None]) -> TreeIndex:
        """The index of a node array (one pass)."""
        index = cls({}, {}, {}, {})
        return index._apply([(None, v) for v in nodes if v is not None], index.repeated)

    def changed(
        self, old: Sequence[TreeNode | None], changes: Mapping[int, TreeNode | None]
    ) -> TreeIndex:
        """The index after ``nodes[x] = changes[x]`` (``old`` is the array before)."""
        pairs = [(old[x], new) for x, new in changes.items() if old[x] is not new]
        if not pairs:
            return self
        copy = TreeIndex(
            dict(self.encryption_keys),
            dict(self.signature_keys),
            dict(self.credential_types),
            dict(self.supported),
            self.members,
        )
        return copy._apply(pairs, self.repeated)

    def _apply(
        self, pairs: Sequence[tuple[TreeNode | None, TreeNode | None]], repeated: int
    ) -> TreeIndex:
        """Count the (old -> new) replacements into this (private, fresh) index."""
        members = self.members
        for before, after in pairs:
            for value, by in ((before, -1), (after, 1)):
                if value is None:
                    continue
                repeated += _bump(self.encryption_keys, value.encryption_key, by)
                if isinstance(value, LeafNode):
                    members += by
                    repeated += _bump(self.signature_keys, value.signature_key, by)
                    _bump_int(self.credential_types, value.credential.credential_type, by)
                    for ctype in set(value.capabilities.credentials):
                        _bump_int(self.supported, ctype, by)
        return TreeIndex(
            self.encryption_keys,
            self.signature_keys,
            self.credential_types,
            self.supported,
            members,
            repeated,
        )

    def has_encryption_key(self, key: bytes) -> bool:
        return key in self.encryption_keys

    def has_signature_key(self, key: bytes) -> bool:
        return key in self.signature_keys
