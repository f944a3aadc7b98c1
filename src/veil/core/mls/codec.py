"""The TLS presentation language as MLS uses it (RFC 9420 §2.1).

Fixed-width big-endian integers, ``opaque`` vectors with the variable-size length header of
§2.1.2 (1, 2 or 4 bytes, minimal encoding required, prefix ``11`` refused), vectors of
structs (the header counts bytes, not elements) and ``optional<T>`` (§2.1.1).

:class:`Reader` is strict and bounded: every length is checked against what is left before
anything is sliced or allocated, a nested vector can never read past its parent, and every
failure is a :class:`~veil.core.errors.DecodeError` naming what was being read. A decoder
calls :meth:`Reader.finish` (or uses :func:`decode_all`) so trailing bytes are refused.

:class:`Writer` is the mirror image. Structs implement ``encode(w)`` and a classmethod
``decode(r)``; :func:`encode` and :func:`decode_all` are the one-call forms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from veil.core.errors import DecodeError, LocalError

MAX_VARINT = (1 << 30) - 1
"""The largest vector length the §2.1.2 header can carry."""

T = TypeVar("T")
S = TypeVar("S", bound="Struct")


class Struct(Protocol):
    """What every MLS struct offers: write itself; ``decode`` is a classmethod beside it."""

    def encode(self, w: Writer) -> None: ...


def varint_bytes(n: int) -> bytes:
    """The minimal §2.1.2 encoding of ``n`` (0 ≤ n < 2^30)."""
    if n < 0 or n > MAX_VARINT:
        raise LocalError(f"vector length {n} does not fit the MLS varint (max {MAX_VARINT})")
    if n < 1 << 6:
        return bytes((n,))
    if n < 1 << 14:
        return (n | 0x4000).to_bytes(2, "big")
    return (n | 0x8000_0000).to_bytes(4, "big")


class Writer:
    """Accumulates the encoding of a struct."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def raw(self, data: bytes) -> None:
        """Bytes with no length (a fixed-size ``opaque[N]`` or an already-encoded struct)."""
        self._parts.append(bytes(data))

    def uint(self, value: int, size: int) -> None:
        """An unsigned integer of ``size`` bytes (uint8/16/32/64)."""
        if value < 0 or value >= 1 << (8 * size):
            raise LocalError(f"{value} does not fit uint{8 * size}")
        self._parts.append(value.to_bytes(size, "big"))

    def u8(self, value: int) -> None:
        self.uint(value, 1)

    def u16(self, value: int) -> None:
        self.uint(value, 2)

    def u32(self, value: int) -> None:
        self.uint(value, 4)

    def u64(self, value: int) -> None:
        self.uint(value, 8)

    def varint(self, value: int) -> None:
        """A bare §2.1.2 variable-length integer."""
        self._parts.append(varint_bytes(value))

    def opaque(self, data: bytes) -> None:
        """``opaque data<V>``: the length header, then the bytes."""
        self._parts.append(varint_bytes(len(data)))
        self._parts.append(bytes(data))

    def vector(self, items: Iterable[T], write: Callable[[Writer, T], None]) -> None:
        """``T items<V>``: each item written by ``write``, prefixed by the total byte length."""
        inner = Writer()
        for item in items:
            write(inner, item)
        self.opaque(inner.getvalue())

    def structs(self, items: Iterable[Struct]) -> None:
        """A vector of structs, each written by its own ``encode``."""
        self.vector(items, lambda w, s: s.encode(w))

    def optional(self, value: T | None, write: Callable[[Writer, T], None]) -> None:
        """``optional<T>`` (§2.1.1): a presence byte, then the value if present."""
        if value is None:
            self.u8(0)
        else:
            self.u8(1)
            write(self, value)

    def struct(self, value: Struct) -> None:
        value.encode(self)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Reads a struct from bytes; nothing is read past the end, every failure is DecodeError."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = pos
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    @property
    def position(self) -> int:
        """Offset of the next byte within the underlying buffer."""
        return self._pos

    @property
    def buffer(self) -> bytes:
        return self._data

    def raw(self, n: int, what: str = "bytes") -> bytes:
        """Exactly ``n`` bytes."""
        if n < 0 or n > self._end - self._pos:
            raise DecodeError(f"truncated {what}: need {n} bytes, have {self.remaining}")
        start = self._pos
        self._pos += n
        return self._data[start : self._pos]

    def uint(self, size: int, what: str = "integer") -> int:
        return int.from_bytes(self.raw(size, what), "big")

    def u8(self, what: str = "uint8") -> int:
        return self.uint(1, what)

    def u16(self, what: str = "uint16") -> int:
        return self.uint(2, what)

    def u32(self, what: str = "uint32") -> int:
        return self.uint(4, what)

    def u64(self, what: str = "uint64") -> int:
        return self.uint(8, what)

    def varint(self, what: str = "vector length") -> int:
        """A §2.1.2 variable-length integer: prefix 11 and non-minimal forms are refused."""
        first = self.u8(what)
        prefix = first >> 6
        if prefix == 3:
            raise DecodeError(f"invalid {what}: variable-length integer prefix 11")
        length = 1 << prefix
        value = first & 0x3F
        for byte in self.raw(length - 1, what):
            value = (value << 8) | byte
        if prefix >= 1 and value < 1 << (8 * (length // 2) - 2):
            raise DecodeError(f"invalid {what}: minimum encoding was not used")
        return value

    def opaque(self, what: str = "opaque<V>") -> bytes:
        """``opaque data<V>``."""
        n = self.varint(what)
        return self.raw(n, what)

    def sub(self, what: str = "vector") -> Reader:
        """A reader over the body of a ``<V>`` vector, bounded by its length header."""
        n = self.varint(what)
        if n > self._end - self._pos:
            raise DecodeError(f"truncated {what}: need {n} bytes, have {self.remaining}")
        sub = Reader(self._data, self._pos, self._pos + n)
        self._pos += n
        return sub

    def vector(self, read: Callable[[Reader], T], what: str = "vector") -> list[T]:
        """``T items<V>``: items are read by ``read`` until the body is used up exactly."""
        sub = self.sub(what)
        items: list[T] = []
        while sub.remaining:
            items.append(read(sub))
        return items

    def optional(self, read: Callable[[Reader], T], what: str = "optional") -> T | None:
        """``optional<T>`` (§2.1.1): presence byte 0 or 1, anything else is refused."""
        present = self.u8(what)
        if present == 0:
            return None
        if present != 1:
            raise DecodeError(f"invalid {what}: presence byte {present}")
        return read(self)

    def enum(self, size: int, allowed: Callable[[int], T], what: str) -> T:
        """An enumerated value, converted by ``allowed`` (which raises ValueError if unknown)."""
        value = self.uint(size, what)
        try:
            return allowed(value)
        except ValueError:
            raise DecodeError(f"unknown {what} {value}") from None

    def finish(self, what: str = "struct") -> None:
        """Refuse trailing bytes."""
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes after {what}")


def encode(value: Struct) -> bytes:
    """The encoding of one struct."""
    w = Writer()
    value.encode(w)
    return w.getvalue()


def decode_all(data: bytes, read: Callable[[Reader], T], what: str = "struct") -> T:
    """Decode exactly one value from ``data``; trailing bytes are a DecodeError.

    Any exception other than DecodeError escaping ``read`` (an index or value error from a
    malformed field) is converted, so callers only ever see DecodeError.
    """
    r = Reader(bytes(data))
    try:
        value = read(r)
    except DecodeError:
        raise
    except (ValueError, IndexError, OverflowError, TypeError, KeyError) as exc:
        raise DecodeError(f"malformed {what}: {type(exc).__name__}") from None
    r.finish(what)
    return value
