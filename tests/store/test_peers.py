"""Sessions, identities with trust, contacts."""

from __future__ import annotations

import pytest

from veil.store import Contact, DeviceStore, IdentityRecord, StoreError


def test_sessions(store: DeviceStore) -> None:
    assert store.session("acc-bob", 1) is None
    assert store.session_devices("acc-bob") == []
    store.save_session("acc-bob", 2, b"two")
    store.save_session("acc-bob", 1, b"one")
    store.save_session("acc-carol", 1, b"carol")
    store.save_session("acc-bob", 1, b"one again")
    assert store.session("acc-bob", 1) == b"one again"
    assert store.session_devices("acc-bob") == [1, 2]
    store.delete_session("acc-bob", 1)
    store.delete_session("acc-bob", 1)
    assert store.session("acc-bob", 1) is None
    assert store.session_devices("acc-bob") == [2]
    assert store.session_devices("acc-carol") == [1]


def test_identities(store: DeviceStore) -> None:
    assert store.identity("acc-bob") is None
    first = IdentityRecord("acc-bob", b"\x05" + b"k" * 32, "unverified", 100)
    store.save_identity(first)
    assert store.identity("acc-bob") == first
    changed = IdentityRecord("acc-bob", b"\x05" + b"n" * 32, "changed", 100, changed_ms=200)
    store.save_identity(changed)
    assert store.identity("acc-bob") == changed
    with pytest.raises(StoreError, match="trust state"):
        store.save_identity(IdentityRecord("acc-bob", b"k", "trusted", 1))
    assert store.identity("acc-bob") == changed


def test_contacts(store: DeviceStore) -> None:
    assert store.contact("acc-bob") is None
    assert store.contact_by_username("bob") is None
    assert store.contacts() == []
    store.save_contact(Contact("acc-bob", "Bob"))
    store.save_contact(Contact("acc-zoe", "zoe"))
    store.save_contact(Contact("acc-ann", "Ann"))
    assert store.contact("acc-bob") == Contact("acc-bob", "Bob")
    assert store.contact_by_username("BOB") == Contact("acc-bob", "Bob")
    assert store.contact_by_username("bob") == Contact("acc-bob", "Bob")
    assert [c.username for c in store.contacts()] == ["Ann", "Bob", "zoe"]
    store.save_contact(Contact("acc-bob", "Robert"))
    assert store.contact("acc-bob") == Contact("acc-bob", "Robert")
    assert store.contact_by_username("bob") is None


def test_contact_by_username_unicode_and_newest(store: DeviceStore) -> None:
    store.save_contact(Contact("acc-old", "Straße"))
    assert store.contact_by_username("STRASSE") == Contact("acc-old", "Straße")
    store.save_contact(Contact("acc-new", "strasse"))  # the name passed to another account
    assert store.contact_by_username("Straße") == Contact("acc-new", "strasse")
    store.save_contact(Contact("acc-old", "Straße"))  # saved again: newest again
    assert store.contact_by_username("strasse") == Contact("acc-old", "Straße")
