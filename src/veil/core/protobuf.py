"""A small, strict Protocol Buffers codec for the few fixed messages Signal uses.

Encoding follows the protobuf wire format (protobuf.dev/programming-guides/encoding): fields
are written in field-number order, as prost (libsignal) writes them. Decoding is strict: a
truncated field, a varint longer than 10 bytes or wider than 64 bits, a group or reserved wire
type, field number 0, or a known field with the wrong wire type raises :class:`DecodeError`.
Unknown fields of a valid wire type are skipped (as protobuf requires, so a peer may add
fields such as SPQR's ``pq_ratchet``). A repeated scalar field keeps the last value.

It is hand-written rather than generated because Signal's messages are tiny and fixed, and a
generated message class costs more per message than the whole Double Ratchet step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from veil.core.errors import DecodeError

VARINT: Final = 0
I64: Final = 1
LEN: Final = 2
I32: Final = 5

FieldValue = int | bytes | list[bytes] | list[int]
Schema = Mapping[int, tuple[int, bool]]
"""Field number -> (wire type, repeated)."""

_MAX64: Final = (1 << 64) - 1


def varint(n: int) -> bytes:
    """Encode a non-negative integer < 2^64 as a protobuf varint."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    """A complete varint field (tag and value)."""
    return varint(number << 3) + varint(value)


def field_bytes(number: int, value: bytes) -> bytes:
    """A complete length-delimited field (tag, length and bytes)."""
    return varint((number << 3) | LEN) + varint(len(value)) + value


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return (value, new position)."""
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result > _MAX64:
                raise DecodeError("varint wider than 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def parse(data: bytes, schema: Schema) -> dict[int, FieldValue]:
    """Parse ``data`` into {field number: value} for the fields in ``schema``.

    Repeated fields become lists; absent fields are absent from the result.
    """
    out: dict[int, FieldValue] = {}
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = read_varint(data, pos)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise DecodeError("field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == LEN:
            length, pos = read_varint(data, pos)
            if length > end - pos:
                raise DecodeError("length-delimited field runs past the end")
            value = data[pos : pos + length]
            pos += length
        elif wire in (I64, I32):
            size = 8 if wire == I64 else 4
            if size > end - pos:
                raise DecodeError("fixed-width field runs past the end")
            value = int.from_bytes(data[pos : pos + size], "little")
            pos += size
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        spec = schema.get(number)
        if spec is None:
            continue
        if spec[0] != wire:
            raise DecodeError(f"field {number} has wire type {wire}, expected {spec[0]}")
        if spec[1]:
            existing = out.setdefault(number, [])
            existing.append(value)  # type: ignore[union-attr, arg-type]
        else:
            out[number] = value
    return out


def get_bytes(fields: Mapping[int, FieldValue], number: int, what: str) -> bytes:
    """The required bytes field ``number``; :class:`DecodeError` naming ``what`` if absent."""
    value = fields.get(number)
    if not isinstance(value, bytes):
        raise DecodeError(f"missing {what}")
    return value


def opt_bytes(fields: Mapping[int, FieldValue], number: int) -> bytes:
    """The optional bytes field ``number``, or ``b""`` when absent."""
    value = fields.get(number, b"")
    if not isinstance(value, bytes):
        raise DecodeError(f"field {number} is not bytes")
    return value


def repeated_bytes(fields: Mapping[int, FieldValue], number: int) -> list[bytes]:
    """The repeated bytes field ``number`` (empty when absent)."""
    value = fields.get(number, [])
    if not isinstance(value, list):
        raise DecodeError(f"field {number} is not repeated")
    out: list[bytes] = []
    for item in value:
        if not isinstance(item, bytes):
            raise DecodeError(f"field {number} holds a non-bytes value")
        out.append(item)
    return out


def get_uint32(fields: Mapping[int, FieldValue], number: int, what: str) -> int:
    """The required uint32 field ``number``; :class:`DecodeError` if absent or too wide."""
    value = fields.get(number)
    if not isinstance(value, int):
        raise DecodeError(f"missing {what}")
    if value > 0xFFFFFFFF:
        raise DecodeError(f"{what} does not fit in 32 bits")
    return value


def opt_uint32(fields: Mapping[int, FieldValue], number: int, what: str) -> int | None:
    """The optional uint32 field ``number``, or None."""
    if number not in fields:
        return None
    return get_uint32(fields, number, what)
