"""Constrained field types shared by the schemas (sizes are the Signal encodings')."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

MAX_U32: Final = 0xFFFFFFFF

USERNAME_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.]{2,31}$"
ACCOUNT_ID_PATTERN: Final = r"^[0-9a-f]{32}$"

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=USERNAME_PATTERN)]
"""3-32 characters: a letter, then letters, digits, ``_`` or ``.``; unique ignoring case."""
AccountId = Annotated[str, msgspec.Meta(pattern=ACCOUNT_ID_PATTERN)]
DeviceId = Annotated[int, msgspec.Meta(ge=1, le=127)]
KeyId = Annotated[int, msgspec.Meta(ge=0, le=MAX_U32)]
RegistrationId = Annotated[int, msgspec.Meta(ge=0, le=MAX_U32)]
DeviceName = Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]
"""Up to 64 characters, no control characters (NUL included)."""
EcPublicKey = Annotated[bytes, msgspec.Meta(min_length=33, max_length=33)]
"""``0x05 || X25519 u`` (the type byte is checked by the server)."""
KyberPublicKey = Annotated[bytes, msgspec.Meta(min_length=1569, max_length=1569)]
"""``0x08 || Kyber1024 public key``."""
Signature = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
