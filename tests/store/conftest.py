"""Fixtures for the device store tests: a fresh store in a temporary profile folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from veil.store import AccountRecord, DeviceStore, MessageRecord


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    """A profile folder that does not exist yet."""
    return tmp_path / "profiles" / "alice"


@pytest.fixture
def store(profile: Path) -> Iterator[DeviceStore]:
    """An open store, closed after the test."""
    opened = DeviceStore.open(profile)
    yield opened
    if not opened.closed:
        opened.close()


def account(**changes: object) -> AccountRecord:
    """An account record with recognisable secrets."""
    fields: dict[str, object] = {
        "server_url": "https://veil.example",
        "account_id": "acc-alice",
        "device_id": 1,
        "credential": "SECRET-CREDENTIAL",
        "username": "alice",
        "identity_private": b"\x5a" * 32,
        "registration_id": 4242,
        "created_ms": 1_700_000_000_000,
    }
    fields.update(changes)
    return AccountRecord(**fields)  # type: ignore[arg-type]


def message(n: int = 1, **changes: object) -> MessageRecord:
    """An incoming message ``n`` from bob (id derived from ``n``)."""
    fields: dict[str, object] = {
        "conversation": "acc-bob",
        "message_id": n.to_bytes(16, "big"),
        "direction": "in",
        "sender_account_id": "acc-bob",
        "sender_device_id": 1,
        "sent_ms": 1000 + n,
        "server_ms": 2000 + n,
        "received_ms": 3000 + n,
        "text": f"hello {n}",
        "attachment": None,
        "attachment_path": None,
        "status": "received",
    }
    fields.update(changes)
    return MessageRecord(**fields)  # type: ignore[arg-type]


def outgoing(n: int = 1, **changes: object) -> MessageRecord:
    """An outgoing message ``n`` from alice to bob, still sending."""
    base: dict[str, object] = {
        "direction": "out",
        "sender_account_id": "acc-alice",
        "status": "sending",
        "server_ms": None,
        "received_ms": None,
    }
    base.update(changes)
    return message(n, **base)
