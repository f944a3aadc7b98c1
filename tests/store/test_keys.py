"""The account row, prekeys and key-id counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.store import DeviceStore, StoreError

from .conftest import account


def test_account_round_trip_and_replace(store: DeviceStore) -> None:
    assert store.account() is None
    store.save_account(account())
    assert store.account() == account()
    store.save_account(account(device_id=3, credential="new", username="Alice"))
    assert store.account() == account(device_id=3, credential="new", username="Alice")
    assert store._one("SELECT COUNT(*) FROM account") == (1,)


def test_account_repr_hides_secrets() -> None:
    text = repr(account())
    assert "SECRET-CREDENTIAL" not in text
    assert "credential" not in text
    assert "identity_private" not in text
    assert repr(b"\x5a" * 32) not in text
    assert "acc-alice" in text


def test_signed_prekeys(store: DeviceStore) -> None:
    assert store.signed_prekey(1) is None
    store.add_signed_prekey(1, b"one", 10)
    store.add_signed_prekey(2, b"two", 20)
    assert store.signed_prekey(1) == b"one"
    store.add_signed_prekey(1, b"uno", 30)  # an id reused after wrapping replaces
    assert store.signed_prekey(1) == b"uno"
    assert store.signed_prekey_ids() == [(2, 20), (1, 30)]
    store.remove_signed_prekey(2)
    store.remove_signed_prekey(2)
    assert store.signed_prekey(2) is None


def test_kyber_last_resort_is_kept(store: DeviceStore) -> None:
    store.add_kyber_prekey(1, b"last", last_resort=True, created_ms=1)
    store.add_kyber_prekey(2, b"once", last_resort=False, created_ms=2)
    store.add_kyber_prekey(3, b"twice", last_resort=False, created_ms=3)
    assert store.kyber_prekey_count() == 2
    store.remove_kyber_prekey(1)
    store.remove_kyber_prekey(2)
    assert store.kyber_prekey(1) == b"last"
    assert store.kyber_prekey(2) is None
    assert store.kyber_prekey(3) == b"twice"
    assert store.kyber_prekey_count() == 1
    store.remove_kyber_prekey(99)  # unknown: no-op


def test_one_time_prekeys(store: DeviceStore) -> None:
    assert store.one_time_prekey_count() == 0
    store.add_one_time_prekeys([(i, bytes([i]) * 32) for i in range(1, 101)])
    store.add_one_time_prekeys([])
    assert store.one_time_prekey_count() == 100
    assert store.one_time_prekey(7) == b"\x07" * 32
    store.remove_one_time_prekey(7)
    store.remove_one_time_prekey(7)
    assert store.one_time_prekey(7) is None
    assert store.one_time_prekey_count() == 99


def test_add_one_time_prekeys_is_atomic(store: DeviceStore) -> None:
    with pytest.raises(StoreError):
        store.add_one_time_prekeys([(1, b"a"), ("x", b"b")])  # type: ignore[list-item]
    assert store.one_time_prekey_count() == 0


def test_next_key_id_is_monotonic_and_persisted(profile: Path) -> None:
    with DeviceStore.open(profile) as store:
        assert [store.next_key_id("one_time") for _ in range(3)] == [1, 2, 3]
        assert store.next_key_id("signed") == 1
        assert store.next_key_id("kyber") == 1
        with pytest.raises(StoreError, match="unknown key kind"):
            store.next_key_id("bogus")
    with DeviceStore.open(profile) as store:
        assert store.next_key_id("one_time") == 4
        assert store.next_key_id("signed") == 2


def test_next_key_id_rolls_back_with_its_transaction(store: DeviceStore) -> None:
    assert store.next_key_id("kyber") == 1
    with pytest.raises(RuntimeError), store.transaction():
        assert store.next_key_id("kyber") == 2
        raise RuntimeError
    assert store.next_key_id("kyber") == 2
