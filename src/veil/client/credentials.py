"""A device's credentials and the HTTP Basic header made from them."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Protocol


class _Registered(Protocol):
    @property
    def account_id(self) -> str: ...
    @property
    def device_id(self) -> int: ...
    @property
    def credential(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Credentials:
    """``account_id``, ``device_id`` and the secret ``credential`` (hidden from ``repr``)."""

    account_id: str
    device_id: int
    credential: str = field(repr=False)

    @classmethod
    def of(cls, answer: _Registered) -> Credentials:
        """From a :class:`~veil.wire.accounts.RegisterResponse` or
        :class:`~veil.wire.provisioning.LinkResponse`."""
        return cls(answer.account_id, answer.device_id, answer.credential)

    @property
    def authorization(self) -> str:
        """``Authorization`` header value: Basic ``<account_id>.<device_id>:<credential>``."""
        raw = f"{self.account_id}.{self.device_id}:{self.credential}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")
