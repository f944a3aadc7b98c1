"""Quick end-to-end checks of the protocol core, run by ``veil selfcheck``.

Each check is a callable that raises :class:`~veil.core.errors.InternalError` on failure. The
checks use a fixed-seed :data:`~veil.core.rng.Rng` (they make throwaway keys only) and exercise
the same code paths as real sessions: XEdDSA, Kyber1024, PQXDH, the Double Ratchet in both
directions with out-of-order delivery, record serialization and safety numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from veil.core.crypto import xeddsa
from veil.core.crypto.kyber import KyberKeyPair
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import DuplicateMessageError, InternalError
from veil.core.rng import seeded_rng
from veil.core.signal import session
from veil.core.signal.fingerprint import fingerprint
from veil.core.signal.pqxdh import PreKeyBundle
from veil.core.signal.record import deserialize_record, serialize_record
from veil.core.signal.state import SessionRecord


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise InternalError(f"self-check failed: {what}")


def _trust(_key: PublicKey) -> bool:
    return True


class _Device:
    """Throwaway keys for one device."""

    def __init__(self, seed: int, registration_id: int) -> None:
        rng = seeded_rng(seed)
        self.rng = rng
        self.local = session.LocalIdentity(PrivateKey.generate(rng), registration_id)
        self.signed = PrivateKey.generate(rng)
        self.kyber = KyberKeyPair.generate(rng)
        self.one_time = PrivateKey.generate(rng)

    def signed_prekey(self, key_id: int) -> PrivateKey | None:
        return self.signed if key_id == 1 else None

    def kyber_prekey(self, key_id: int) -> KyberKeyPair | None:
        return self.kyber if key_id == 1 else None

    def one_time_prekey(self, key_id: int) -> PrivateKey | None:
        return self.one_time if key_id == 1 else None

    def bundle(self) -> PreKeyBundle:
        ik = self.local.identity
        return PreKeyBundle(
            registration_id=self.local.registration_id,
            device_id=1,
            identity_key=ik.public_key,
            signed_prekey_id=1,
            signed_prekey=self.signed.public_key,
            signed_prekey_signature=xeddsa.sign(ik, self.signed.public_key.serialize(), self.rng),
            kyber_prekey_id=1,
            kyber_prekey=self.kyber.public_key,
            kyber_prekey_signature=xeddsa.sign(ik, self.kyber.public_key.serialize(), self.rng),
            prekey_id=1,
            prekey=self.one_time.public_key,
        )


def check_xeddsa() -> None:
    """XEdDSA signatures verify, and fail for another message."""
    rng = seeded_rng(1)
    key = PrivateKey.generate(rng)
    sig = xeddsa.sign(key, b"veil", rng)
    _require(xeddsa.verify(key.public_key, b"veil", sig), "XEdDSA signature verifies")
    _require(not xeddsa.verify(key.public_key, b"veil!", sig), "XEdDSA rejects another message")


def check_kyber() -> None:
    """Kyber1024 encapsulation and decapsulation agree."""
    pair = KyberKeyPair.generate(seeded_rng(2))
    secret, ct = pair.public_key.encapsulate()
    _require(pair.decapsulate(ct) == secret, "Kyber1024 shared secrets agree")


def check_session() -> None:
    """PQXDH, then messages both ways, out of order, a duplicate refused, record round trip."""
    alice, bob = _Device(10, 1), _Device(20, 2)
    ra, rb = SessionRecord(), SessionRecord()
    session.initiate(ra, bob.bundle(), alice.local, rng=alice.rng, now_ms=0, trust=_trust)
    first = session.encrypt(ra, b"hello", now_ms=0, trust=_trust)
    got = session.decrypt_prekey(rb, first.serialized, bob.local, bob, rng=bob.rng, trust=_trust)
    _require(got.plaintext == b"hello", "PreKey message decrypts")
    replies = [session.encrypt(rb, b"r%d" % i, now_ms=0, trust=_trust) for i in range(3)]
    for i in (2, 0, 1):
        pt = session.decrypt_signal(ra, replies[i].serialized, rng=alice.rng, trust=_trust)
        _require(pt == b"r%d" % i, "out-of-order replies decrypt")
    try:
        session.decrypt_signal(ra, replies[0].serialized, rng=alice.rng, trust=_trust)
    except DuplicateMessageError:
        pass
    else:
        raise InternalError("self-check failed: a duplicate was accepted")
    ra = deserialize_record(serialize_record(ra))
    again = session.encrypt(ra, b"after restore", now_ms=0, trust=_trust)
    pt = session.decrypt_signal(rb, again.serialized, rng=bob.rng, trust=_trust)
    _require(pt == b"after restore", "a restored record keeps working")


def check_safety_number() -> None:
    """Both sides compute the same 60-digit safety number."""
    a, b = PrivateKey.generate(seeded_rng(3)), PrivateKey.generate(seeded_rng(4))
    fa = fingerprint(2, 5200, b"a" * 16, a.public_key, b"b" * 16, b.public_key)
    fb = fingerprint(2, 5200, b"b" * 16, b.public_key, b"a" * 16, a.public_key)
    _require(fa.displayable == fb.displayable and len(fa.displayable) == 60, "safety numbers")


CHECKS: Final[list[tuple[str, Callable[[], None]]]] = [
    ("XEdDSA sign/verify", check_xeddsa),
    ("Kyber1024 (ML-KEM-1024) KEM", check_kyber),
    ("PQXDH + Double Ratchet session", check_session),
    ("safety numbers", check_safety_number),
]
