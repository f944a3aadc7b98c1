"""Shared plumbing of the MLS wire structs (RFC 9420 §2.1).

:class:`WireStruct` gives every struct ``to_bytes()`` and ``from_bytes()`` on top of its own
``encode(w)`` and ``decode(r)``. Helpers read extensible enums (kept as plain ``int`` when the
value is unknown, so re-encoding is byte-identical) and closed enums (unknown values are a
:class:`~veil.core.errors.DecodeError`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Protocol, Self, TypeVar

from veil.core.mls.codec import Reader, Writer, decode_all

E = TypeVar("E", bound=IntEnum)
T = TypeVar("T")


class WireStruct:
    """Mixin: ``to_bytes`` / ``from_bytes`` for a struct with ``encode`` and ``decode``."""

    __slots__ = ()

    def encode(self, w: Writer) -> None:  # pragma: no cover - every struct overrides it
        raise NotImplementedError

    @classmethod
    def decode(cls, r: Reader) -> Self:  # pragma: no cover - every struct overrides it
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode exactly one struct; trailing bytes and malformed input are DecodeError."""
        return decode_all(data, cls.decode, cls.__name__)


class SignedWireStruct(WireStruct):
    """Mixin: a struct whose encoding is its to-be-signed part, then ``opaque signature<V>``.

    The struct writes the TBS part in ``_encode_tbs(w)`` and has a ``signature`` field;
    this gives ``tbs()`` and ``encode(w)`` (KeyPackage, GroupInfo).
    """

    __slots__ = ()
    signature: bytes

    def _encode_tbs(self, w: Writer) -> None:  # pragma: no cover - every struct overrides it
        raise NotImplementedError

    def tbs(self) -> bytes:
        """The to-be-signed encoding: every field but the signature."""
        w = Writer()
        self._encode_tbs(w)
        return w.getvalue()

    def encode(self, w: Writer) -> None:
        self._encode_tbs(w)
        w.opaque(self.signature)


def open_enum(enum: type[E], value: int) -> int:
    """The enum member for ``value`` if known, else the bare int (extensible registries)."""
    try:
        return enum(value)
    except ValueError:
        return value


def closed_enum(r: Reader, size: int, enum: type[E], what: str) -> E:
    """Read a closed enum; its members omit ``reserved`` (0), so 0 and unknowns are refused."""
    value: E = r.enum(size, enum, what)
    return value


def read_u16_list(r: Reader, what: str) -> tuple[int, ...]:
    """``uint16 items<V>`` as a tuple of ints."""
    return tuple(r.vector(lambda s: s.u16(what), what))


def write_u16_list(w: Writer, items: tuple[int, ...]) -> None:
    w.vector(items, lambda s, v: s.u16(v))


def read_structs(r: Reader, decode: Callable[[Reader], T], what: str) -> tuple[T, ...]:
    return tuple(r.vector(decode, what))


class RefHasher(Protocol):
    """What a reference hash needs from a cipher suite (``veil.core.mls.suite.CipherSuite``)."""

    def ref_hash(self, label: bytes, value: bytes) -> bytes: ...
