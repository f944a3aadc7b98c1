"""Commit (RFC 9420 §12.4): the proposals it covers and an optional UpdatePath."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from veil.core.mls.codec import Reader, Writer
from veil.core.mls.structs._base import WireStruct, read_structs
from veil.core.mls.structs.proposals import ProposalOrRef
from veil.core.mls.structs.tree import UpdatePath


@dataclass(frozen=True, slots=True)
class Commit(WireStruct):
    """§12.4: ``struct { ProposalOrRef proposals<V>; optional<UpdatePath> path; }``."""

    proposals: tuple[ProposalOrRef, ...] = ()
    path: UpdatePath | None = None

    def encode(self, w: Writer) -> None:
        w.structs(self.proposals)
        w.optional(self.path, lambda s, p: p.encode(s))

    @classmethod
    def decode(cls, r: Reader) -> Self:
        proposals = read_structs(r, ProposalOrRef.decode, "commit proposals")
        return cls(proposals, r.optional(UpdatePath.decode, "commit path"))
