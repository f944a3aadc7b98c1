"""Constrained field types shared by the schemas (sizes are the Signal encodings')."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

MAX_U32: Final = 0xFFFFFFFF

Username = Annotated[
    str, msgspec.Meta(min_length=3, max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9_.]*$")
]
"""3-32 characters: a letter, then letters, digits, ``_`` or ``.``; unique ignoring case."""
AccountId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
DeviceId = Annotated[int, msgspec.Meta(ge=1, le=127)]
KeyId = Annotated[int, msgspec.Meta(ge=0, le=MAX_U32)]
RegistrationId = Annotated[int, msgspec.Meta(ge=0, le=MAX_U32)]
DeviceName = Annotated[str, msgspec.Meta(max_length=64)]
EcPublicKey = Annotated[bytes, msgspec.Meta(min_length=33, max_length=33)]
"""``0x05 || X25519 u`` (the type byte is checked by the server)."""
KyberPublicKey = Annotated[bytes, msgspec.Meta(min_length=1569, max_length=1569)]
"""``0x08 || Kyber1024 public key``."""
Signature = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
