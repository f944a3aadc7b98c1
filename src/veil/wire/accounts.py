"""Accounts and devices: registration, lookup, device list."""

from __future__ import annotations

import msgspec

from veil.wire.types import (
    AccountId,
    DeviceId,
    DeviceName,
    EcPublicKey,
    RegistrationId,
    Username,
)


class RegisterRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Create an account with its primary device (id 1)."""

    username: Username
    identity_key: EcPublicKey
    registration_id: RegistrationId
    device_name: DeviceName = ""


class RegisterResponse(msgspec.Struct, frozen=True):
    """The new account's id, the device id (1) and the device's credential.

    The credential is shown once; the server keeps only its hash. Every other call
    authenticates with HTTP Basic ``<account_id>.<device_id>:<credential>``.
    """

    account_id: AccountId
    device_id: DeviceId
    credential: str

    def __repr__(self) -> str:
        return f"RegisterResponse(account_id={self.account_id!r}, device_id={self.device_id})"


class AccountInfo(msgspec.Struct, frozen=True):
    """Public facts about an account (what a lookup by username returns)."""

    account_id: AccountId
    username: str
    identity_key: EcPublicKey


class DeviceInfo(msgspec.Struct, frozen=True):
    """One device in a device list."""

    device_id: DeviceId
    registration_id: RegistrationId
    name: str
    created_ms: int


class DeviceList(msgspec.Struct, frozen=True):
    """An account's devices."""

    devices: list[DeviceInfo]
