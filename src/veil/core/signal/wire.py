"""SignalMessage and PreKeySignalMessage, version 4, byte for byte as libsignal 0.90.0.

WIRE.md §3.5-3.6. A SignalMessage (type 2, "whisper") is ``version ‖ protobuf ‖ MAC8``; a
PreKeySignalMessage (type 3) is ``version ‖ protobuf`` carrying a whole SignalMessage. The
version byte is ``(message version << 4) | 4``. Fields are emitted in field-number order.

MAC8 = HMAC-SHA256(mac key, IK_sender ‖ IK_receiver ‖ version byte ‖ protobuf)[:8]. The MAC
is checked over the bytes as received, so fields we do not interpret (``pq_ratchet``,
``addresses``) stay covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from veil.core import protobuf as pb
from veil.core.crypto.kdf import constant_time_equal, hmac_sha256
from veil.core.crypto.kyber import SERIALIZED_CIPHERTEXT_LEN
from veil.core.crypto.x25519 import PublicKey
from veil.core.errors import DecodeError, UnsupportedVersionError

CIPHERTEXT_VERSION: Final = 4
MAC_LEN: Final = 8
WHISPER_TYPE: Final = 2
PREKEY_TYPE: Final = 3

_SIGNAL_SCHEMA: Final = {
    1: (pb.LEN, False),  # ratchet_key
    2: (pb.VARINT, False),  # counter
    3: (pb.VARINT, False),  # previous_counter
    4: (pb.LEN, False),  # ciphertext
    5: (pb.LEN, False),  # pq_ratchet (SPQR)
    6: (pb.LEN, False),  # addresses
}
_PREKEY_SCHEMA: Final = {
    1: (pb.VARINT, False),  # pre_key_id
    2: (pb.LEN, False),  # base_key
    3: (pb.LEN, False),  # identity_key
    4: (pb.LEN, False),  # message
    5: (pb.VARINT, False),  # registration_id
    6: (pb.VARINT, False),  # signed_pre_key_id
    7: (pb.VARINT, False),  # kyber_pre_key_id
    8: (pb.LEN, False),  # kyber_ciphertext
}


def _version_byte(version: int) -> bytes:
    return bytes(((version << 4) | CIPHERTEXT_VERSION,))


def _check_version(data: bytes, what: str) -> int:
    if not data:
        raise DecodeError(f"empty {what}")
    version = data[0] >> 4
    if version < 3:
        raise UnsupportedVersionError(f"legacy {what} version {version}")
    if version > CIPHERTEXT_VERSION:
        raise UnsupportedVersionError(f"unknown {what} version {version}")
    return version


def compute_mac(
    mac_key: bytes, sender_identity: PublicKey, receiver_identity: PublicKey, body: bytes
) -> bytes:
    """MAC8 over ``IK_sender ‖ IK_receiver ‖ body`` (body = version byte ‖ protobuf)."""
    data = sender_identity.serialize() + receiver_identity.serialize() + body
    return hmac_sha256(mac_key, data)[:MAC_LEN]


def encode_signal_message(
    mac_key: bytes,
    identities: bytes,
    ratchet_key: PublicKey,
    counter: int,
    previous_counter: int,
    ciphertext: bytes,
    version: int = CIPHERTEXT_VERSION,
) -> bytes:
    """Wire bytes of a SignalMessage; ``identities`` = IK_sender ‖ IK_receiver (66 bytes)."""
    body = b"".join(
        (
            _version_byte(version),
            b"\x0a\x21",  # field 1, 33 bytes
            ratchet_key.serialize(),
            b"\x10",
            pb.varint(counter),
            b"\x18",
            pb.varint(previous_counter),
            b"\x22",
            pb.varint(len(ciphertext)),
            ciphertext,
        )
    )
    return body + hmac_sha256(mac_key, identities + body)[:MAC_LEN]


def parse_canonical(data: bytes) -> tuple[bytes, int, int, bytes] | None:
    """Fast path for the layout libsignal and Veil write: fields 1, 2, 3, 4 in order, once.

    Returns None for any other layout (extra fields such as SPQR's, other order, damage);
    the caller then uses the general parser, which accepts or refuses it. Returns the
    33-byte serialized ratchet key, counter, previous counter and ciphertext; the version byte
    and the MAC are the caller's to check.
    """
    end = len(data) - MAC_LEN
    if end < 40 or data[1] != 0x0A or data[2] != 33 or data[36] != 0x10:
        return None
    counter, pos = pb.read_varint(data, 37)
    if pos >= end or data[pos] != 0x18:
        return None
    previous, pos = pb.read_varint(data, pos + 1)
    if pos >= end or data[pos] != 0x22:
        return None
    length, pos = pb.read_varint(data, pos + 1)
    if pos + length != end or counter > 0xFFFFFFFF or previous > 0xFFFFFFFF:
        return None
    return data[3:36], counter, previous, data[pos:end]


@dataclass(slots=True, eq=False)
class SignalMessage:
    """A parsed (or freshly built) SignalMessage. ``serialized`` is the exact wire bytes.

    Treat it as immutable (it is not frozen only because frozen dataclasses are slow to build,
    and one is built per message).
    """

    version: int
    ratchet_key: PublicKey
    counter: int
    previous_counter: int
    ciphertext: bytes
    pq_ratchet: bytes
    serialized: bytes

    @classmethod
    def build(
        cls,
        *,
        mac_key: bytes,
        ratchet_key: PublicKey,
        counter: int,
        previous_counter: int,
        ciphertext: bytes,
        sender_identity: PublicKey,
        receiver_identity: PublicKey,
        version: int = CIPHERTEXT_VERSION,
    ) -> SignalMessage:
        """Encode and MAC a new message (no ``pq_ratchet``, no ``addresses``)."""
        data = encode_signal_message(
            mac_key,
            sender_identity.serialize() + receiver_identity.serialize(),
            ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            version,
        )
        return cls(version, ratchet_key, counter, previous_counter, ciphertext, b"", data)

    @classmethod
    def parse(
        cls, data: bytes, canonical: tuple[bytes, int, int, bytes] | None = None
    ) -> SignalMessage:
        """Parse wire bytes; :class:`DecodeError` (or :class:`UnsupportedVersionError`).

        ``canonical`` is :func:`parse_canonical`'s result for ``data``, if the caller has it.
        """
        version = _check_version(data, "SignalMessage")
        if len(data) < 1 + MAC_LEN:
            raise DecodeError("SignalMessage too short")
        fast = canonical if canonical is not None else parse_canonical(data)
        if fast is not None:
            key, counter, previous, ciphertext = fast
            return cls(
                version, PublicKey.deserialize(key), counter, previous, ciphertext, b"", data
            )
        fields = pb.parse(data[1:-MAC_LEN], _SIGNAL_SCHEMA)
        ratchet_key = PublicKey.deserialize(pb.get_bytes(fields, 1, "ratchet key"))
        counter = pb.get_uint32(fields, 2, "counter")
        previous = pb.opt_uint32(fields, 3, "previous counter") or 0
        ciphertext = pb.get_bytes(fields, 4, "ciphertext")
        pq = pb.opt_bytes(fields, 5)
        return cls(version, ratchet_key, counter, previous, ciphertext, pq, bytes(data))

    def verify_mac(
        self, mac_key: bytes, sender_identity: PublicKey, receiver_identity: PublicKey
    ) -> bool:
        """True if the trailing MAC8 matches (constant-time comparison)."""
        data = self.serialized
        mac = compute_mac(mac_key, sender_identity, receiver_identity, data[:-MAC_LEN])
        return constant_time_equal(mac, data[-MAC_LEN:])

    def __repr__(self) -> str:
        return (
            f"SignalMessage(v{self.version}, counter={self.counter}, "
            f"previous_counter={self.previous_counter}, {len(self.ciphertext)} ciphertext bytes)"
        )


@dataclass(frozen=True, slots=True)
class PreKeySignalMessage:
    """A PreKeySignalMessage: the PQXDH header plus the first SignalMessage(s)."""

    version: int
    registration_id: int
    pre_key_id: int | None
    signed_pre_key_id: int
    kyber_pre_key_id: int
    kyber_ciphertext: bytes
    base_key: PublicKey
    identity_key: PublicKey
    message: SignalMessage
    serialized: bytes

    @classmethod
    def build(
        cls,
        *,
        registration_id: int,
        pre_key_id: int | None,
        signed_pre_key_id: int,
        kyber_pre_key_id: int,
        kyber_ciphertext: bytes,
        base_key: PublicKey,
        identity_key: PublicKey,
        message: SignalMessage,
    ) -> PreKeySignalMessage:
        """Encode a PreKeySignalMessage around ``message``."""
        parts = [_version_byte(message.version)]
        if pre_key_id is not None:
            parts.append(pb.field_varint(1, pre_key_id))
        parts += [
            pb.field_bytes(2, base_key.serialize()),
            pb.field_bytes(3, identity_key.serialize()),
            pb.field_bytes(4, message.serialized),
            pb.field_varint(5, registration_id),
            pb.field_varint(6, signed_pre_key_id),
            pb.field_varint(7, kyber_pre_key_id),
            pb.field_bytes(8, kyber_ciphertext),
        ]
        return cls(
            message.version,
            registration_id,
            pre_key_id,
            signed_pre_key_id,
            kyber_pre_key_id,
            kyber_ciphertext,
            base_key,
            identity_key,
            message,
            b"".join(parts),
        )

    @classmethod
    def parse(cls, data: bytes) -> PreKeySignalMessage:
        """Parse wire bytes. Version 3 (X3DH, no Kyber) is refused as unsupported."""
        version = _check_version(data, "PreKeySignalMessage")
        fields = pb.parse(data[1:], _PREKEY_SCHEMA)
        base_key = PublicKey.deserialize(pb.get_bytes(fields, 2, "base key"))
        identity_key = PublicKey.deserialize(pb.get_bytes(fields, 3, "identity key"))
        message = SignalMessage.parse(pb.get_bytes(fields, 4, "message"))
        signed_id = pb.get_uint32(fields, 6, "signed prekey id")
        if version < CIPHERTEXT_VERSION:
            raise UnsupportedVersionError("X3DH (PreKeySignalMessage v3) is no longer supported")
        kyber_id = pb.get_uint32(fields, 7, "Kyber prekey id")
        kyber_ct = pb.get_bytes(fields, 8, "Kyber ciphertext")
        if len(kyber_ct) != SERIALIZED_CIPHERTEXT_LEN:
            raise DecodeError("Kyber ciphertext has the wrong length")
        if message.version != version:
            raise DecodeError("inner SignalMessage version differs from the PreKey message")
        return cls(
            version,
            pb.opt_uint32(fields, 5, "registration id") or 0,
            pb.opt_uint32(fields, 1, "prekey id"),
            signed_id,
            kyber_id,
            kyber_ct,
            base_key,
            identity_key,
            message,
            bytes(data),
        )

    def __repr__(self) -> str:
        return (
            f"PreKeySignalMessage(v{self.version}, registration_id={self.registration_id}, "
            f"pre_key_id={self.pre_key_id}, signed_pre_key_id={self.signed_pre_key_id}, "
            f"kyber_pre_key_id={self.kyber_pre_key_id}, message={self.message!r})"
        )
