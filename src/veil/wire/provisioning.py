"""Linking a new device (Signal-style provisioning): mailbox, code, link.

1. The new device opens a mailbox: ``POST /v1/provisioning`` -> :class:`ProvisioningCreated`
   (its id and a secret token; the id and the device's ephemeral public key travel to the
   existing device out of band, e.g. in a QR code).
2. The existing device asks for a linking code (``POST /v1/devices/provisioning-code`` ->
   :class:`ProvisioningCode`) and puts a :class:`ProvisioningMessage` -- ciphertext to the
   new device's ephemeral key, holding the account's identity and the code -- into the
   mailbox: ``PUT /v1/provisioning/{provisioning_id}``. The server cannot read it.
3. The new device long-polls ``GET /v1/provisioning/{provisioning_id}?wait=S`` with
   ``Authorization: Bearer <token>``, gets the message once, and links itself with
   :class:`LinkRequest` -> :class:`LinkResponse` (``POST /v1/devices/link``).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from veil.wire.types import AccountId, DeviceId, DeviceName, RegistrationId

MAX_PROVISIONING_MESSAGE: Final = 64 * 1024
"""Largest provisioning message (the server refuses a bigger one with 413)."""
PROVISIONING_ID_PATTERN: Final = r"^[0-9a-f]{32}$"

LinkingCode = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
"""A linking code as the server issues it (URL-safe base64 characters)."""


class ProvisioningCreated(msgspec.Struct, frozen=True):
    """A new mailbox; ``token`` (shown once, stored as a hash) authorises reading it."""

    provisioning_id: str
    token: str
    expires_ms: int

    def __repr__(self) -> str:
        return (
            f"ProvisioningCreated(provisioning_id={self.provisioning_id!r},"
            f" expires_ms={self.expires_ms})"
        )


class ProvisioningMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Opaque ciphertext for the new device, at most :data:`MAX_PROVISIONING_MESSAGE` bytes."""

    message: bytes

    def __repr__(self) -> str:
        return f"ProvisioningMessage({len(self.message)} bytes)"


class ProvisioningCode(msgspec.Struct, frozen=True):
    """A single-use linking code for the caller's account (shown once, stored as a hash)."""

    code: str
    expires_ms: int

    def __repr__(self) -> str:
        return f"ProvisioningCode(expires_ms={self.expires_ms})"


class LinkRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The new device registers under ``account_id`` with the code it was given."""

    account_id: AccountId
    code: LinkingCode
    registration_id: RegistrationId
    device_name: DeviceName = ""

    def __repr__(self) -> str:
        return (
            f"LinkRequest(account_id={self.account_id!r},"
            f" registration_id={self.registration_id}, device_name={self.device_name!r})"
        )


class LinkResponse(msgspec.Struct, frozen=True):
    """The linked device's id and credential (shown once; authenticate as for device 1)."""

    account_id: AccountId
    device_id: DeviceId
    credential: str

    def __repr__(self) -> str:
        return f"LinkResponse(account_id={self.account_id!r}, device_id={self.device_id})"
