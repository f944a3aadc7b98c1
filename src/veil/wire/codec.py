"""JSON encoding and strict decoding of wire Structs."""

from __future__ import annotations

from typing import TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


class WireError(ValueError):
    """A request or response body that is not valid JSON for its schema."""


def encode(value: object) -> bytes:
    """JSON bytes of a Struct (or any msgspec-encodable value)."""
    return _encoder.encode(value)


def decode(data: bytes, kind: type[T]) -> T:
    """Decode and validate ``data`` as ``kind``; :class:`WireError` says what is wrong."""
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise WireError(str(exc)) from None
    except UnicodeDecodeError:
        raise WireError("a JSON string is not valid UTF-8") from None
