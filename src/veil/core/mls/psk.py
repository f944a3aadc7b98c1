"""Pre-shared keys in the key schedule (RFC 9420 §8.4).

A PSK enters the key schedule under its PreSharedKeyID; the ids and PSKs of one Commit (or
one GroupSecrets) are chained in their order::

    psk_extracted_[i] = Extract(0, psk_[i])
    psk_input_[i]     = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, Nh)
    psk_secret_[0]    = 0
    psk_secret_[i]    = Extract(psk_input_[i-1], psk_secret_[i-1])

with ``PSKLabel = struct { PreSharedKeyID id; uint16 index; uint16 count; }``.

The id is taken as its encoding (bytes) or as any struct with ``encode(w)`` (such as
``structs.proposals.PreSharedKeyID``). :func:`external_psk_id` and :func:`resumption_psk_id`
encode the two id forms from plain values (through ``PreSharedKeyID``, the one encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from veil.core.errors import LocalError
from veil.core.mls.codec import Struct, Writer, encode
from veil.core.mls.structs.proposals import PreSharedKeyID, PSKType, ResumptionPSKUsage
from veil.core.mls.suite import CipherSuite

MAX_PSKS = 0xFFFF

PskType = PSKType
"""PSKType (§8.4): the one enum of ``structs.proposals``, under this module's name."""

ResumptionUsage = ResumptionPSKUsage
"""ResumptionPSKUsage (§8.4): the one enum of ``structs.proposals``, under this module's name."""


def external_psk_id(psk_id: bytes, psk_nonce: bytes) -> bytes:
    """The encoding of an external PreSharedKeyID."""
    return PreSharedKeyID.external(psk_id, psk_nonce).to_bytes()


def resumption_psk_id(
    usage: ResumptionUsage, psk_group_id: bytes, psk_epoch: int, psk_nonce: bytes
) -> bytes:
    """The encoding of a resumption PreSharedKeyID."""
    return PreSharedKeyID.resumption(usage, psk_group_id, psk_epoch, psk_nonce).to_bytes()


@dataclass(frozen=True, slots=True)
class Psk:
    """One PSK as the key schedule takes it: its PreSharedKeyID (encoded) and its value."""

    id: bytes
    psk: bytes = field(repr=False)

    @classmethod
    def of(cls, psk_id: bytes | Struct, psk: bytes) -> Psk:
        return cls(psk_id if isinstance(psk_id, bytes) else encode(psk_id), psk)


def psk_label(encoded_id: bytes, index: int, count: int) -> bytes:
    """The encoding of PSKLabel (§8.4)."""
    w = Writer()
    w.raw(encoded_id)
    w.u16(index)
    w.u16(count)
    return w.getvalue()


def psk_secret(suite: CipherSuite, psks: Sequence[Psk]) -> bytes:
    """psk_secret (§8.4) of these PSKs in order; all zero (Nh bytes) for none."""
    count = len(psks)
    if count > MAX_PSKS:
        raise LocalError("too many PSKs for a uint16 count")
    zero = bytes(suite.nh)
    secret = zero
    for index, item in enumerate(psks):
        extracted = suite.extract(zero, item.psk)
        label = psk_label(item.id, index, count)
        psk_input = suite.expand_with_label(extracted, b"derived psk", label, suite.nh)
        secret = suite.extract(psk_input, secret)
    return secret
