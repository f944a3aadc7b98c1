"""Linking a new device: the provisioning message and its envelope.

docs/client-design.md "Identity and devices": the new device opens a provisioning mailbox on
the server and shows :func:`link_uri` (``veil-link:<provisioning_id>:<key>``, the key being a
fresh X25519 public key in unpadded base64url); the existing device reads it with
:func:`parse_link_uri`, seals a :class:`ProvisionMessage` to that key
(:func:`seal_provisioning`) and puts the envelope into the mailbox; the new device opens it
(:func:`open_provisioning`) and links itself with the code.

Message (protobuf wire format, :mod:`veil.core.protobuf`; unknown fields are skipped,
as the codec documents)::

    ProvisionMessage {1: version (=1), 2: identity private key (32 bytes), 3: account id,
                      4: username, 5: linking code, 6: repeated Contact}
    Contact          {1: account id, 2: username}

Account ids are 32 lowercase hex digits, usernames 3-32 characters (a letter, then letters,
digits, ``_`` or ``.``), linking codes 1-64 URL-safe base64 characters -- the server's formats,
restated here because the core depends on no other layer. At most :data:`MAX_CONTACTS` contacts, no
account twice, so that an envelope fits the server's 64 KiB mailbox limit.

Envelope::

    aes_key (32) || mac_key (32) = HKDF-SHA256(X25519(ephemeral, recipient), salt = "",
                                               info = "veil provisioning v1")
    envelope = 0x01 || ephemeral public (32) || iv (16) || AES-256-CBC(PKCS7(message))
               || HMAC-SHA256(mac_key, everything before it)

:func:`open_provisioning` raises :class:`BadMacError` when the MAC fails (wrong recipient key,
tampering) and :class:`DecodeError` for everything else.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from veil.core import protobuf as pb
from veil.core.crypto import cbc
from veil.core.crypto.kdf import constant_time_equal, hkdf_sha256, hmac_sha256
from veil.core.crypto.x25519 import KEY_LEN, PrivateKey, PublicKey
from veil.core.errors import BadMacError, DecodeError, LocalError, VeilError
from veil.core.rng import Rng

PROVISION_VERSION: Final = 1
ENVELOPE_VERSION: Final = 1
MAX_CONTACTS: Final = 900
MAX_ENVELOPE: Final = 64 * 1024
LINK_SCHEME: Final = "veil-link:"

_INFO: Final = b"veil provisioning v1"
_HEADER: Final = 1 + KEY_LEN + 16
_MAC_LEN: Final = 32
_ACCOUNT_ID: Final = re.compile(r"[0-9a-f]{32}")
_USERNAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.]{2,31}")
_LINKING_CODE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEY_B64: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_MESSAGE: Final = {
    1: (pb.VARINT, False),
    **{n: (pb.LEN, False) for n in (2, 3, 4, 5)},
    6: (pb.LEN, True),
}
_CONTACT: Final = {1: (pb.LEN, False), 2: (pb.LEN, False)}


@dataclass(frozen=True, slots=True)
class ProvisionMessage:
    """What a linked device needs: the account identity, the linking code and the contacts.

    ``contacts`` are ``(account id, username)`` pairs. ``repr`` hides the identity private key
    and the linking code.
    """

    identity_private: bytes
    account_id: str
    username: str
    linking_code: str
    contacts: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return (
            f"ProvisionMessage(account_id={self.account_id!r}, username={self.username!r},"
            f" identity_private=<hidden>, linking_code=<hidden>,"
            f" contacts=<{len(self.contacts)}>)"
        )


# --- message codec --------------------------------------------------------------------------


def encode_provision(message: ProvisionMessage) -> bytes:
    """Encode ``message``; :class:`LocalError` if a field breaks the module's rules."""
    problem = _problem(message)
    if problem is not None:
        raise LocalError(f"invalid provision message: {problem}")
    parts = [
        pb.field_varint(1, PROVISION_VERSION),
        pb.field_bytes(2, message.identity_private),
        pb.field_bytes(3, message.account_id.encode()),
        pb.field_bytes(4, message.username.encode()),
        pb.field_bytes(5, message.linking_code.encode()),
    ]
    parts += [
        pb.field_bytes(6, pb.field_bytes(1, a.encode()) + pb.field_bytes(2, u.encode()))
        for a, u in message.contacts
    ]
    return b"".join(parts)


def decode_provision(data: bytes) -> ProvisionMessage:
    """Decode bytes made by :func:`encode_provision`; only :class:`DecodeError`."""
    try:
        f = pb.parse(data, _MESSAGE)
        if pb.get_uint32(f, 1, "provision version") != PROVISION_VERSION:
            raise DecodeError("unknown provision message version")
        raw_contacts = pb.repeated_bytes(f, 6)
        if len(raw_contacts) > MAX_CONTACTS:
            raise DecodeError("too many contacts")
        message = ProvisionMessage(
            identity_private=pb.get_bytes(f, 2, "identity key"),
            account_id=_ascii(pb.get_bytes(f, 3, "account id")),
            username=_ascii(pb.get_bytes(f, 4, "username")),
            linking_code=_ascii(pb.get_bytes(f, 5, "linking code")),
            contacts=tuple(_decode_contact(c) for c in raw_contacts),
        )
    except DecodeError:
        raise
    except (VeilError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DecodeError(f"invalid provision message: {type(exc).__name__}") from None
    problem = _problem(message)
    if problem is not None:
        raise DecodeError(f"invalid provision message: {problem}")
    return message


def _decode_contact(data: bytes) -> tuple[str, str]:
    f = pb.parse(data, _CONTACT)
    return _ascii(pb.get_bytes(f, 1, "contact account id")), _ascii(
        pb.get_bytes(f, 2, "contact username")
    )


def _ascii(raw: bytes) -> str:
    """Every string here is ASCII by its pattern; anything else is refused early."""
    if not raw.isascii():
        raise DecodeError("non-ASCII identifier")
    return raw.decode("ascii")


def _problem(m: ProvisionMessage) -> str | None:
    return next(_problems(m), None)


def _problems(m: ProvisionMessage) -> Iterator[str]:
    """Yield the first rule ``m`` breaks (the caller stops there)."""
    if len(m.identity_private) != KEY_LEN:
        yield "identity private key must be 32 bytes"
    if _ACCOUNT_ID.fullmatch(m.account_id) is None:
        yield "account id must be 32 lowercase hex digits"
    if _USERNAME.fullmatch(m.username) is None:
        yield "malformed username"
    if _LINKING_CODE.fullmatch(m.linking_code) is None:
        yield "malformed linking code"
    if len(m.contacts) > MAX_CONTACTS:
        yield "too many contacts"
    if len({a for a, _ in m.contacts}) != len(m.contacts):
        yield "a contact appears twice"
    for account_id, username in m.contacts:
        if _ACCOUNT_ID.fullmatch(account_id) is None or _USERNAME.fullmatch(username) is None:
            yield "malformed contact"


# --- envelope -------------------------------------------------------------------------------


def seal_provisioning(message: ProvisionMessage, recipient: PublicKey, rng: Rng) -> bytes:
    """Encrypt ``message`` to the new device's ``recipient`` key (module docstring layout).

    Raises :class:`LocalError` for an invalid message and
    :class:`~veil.core.errors.InvalidKeyError` for a small-order ``recipient`` (keys from
    :func:`parse_link_uri` are already checked).
    """
    plaintext = encode_provision(message)
    ephemeral = PrivateKey.generate(rng)
    aes_key, mac_key = _derive(ephemeral.agree(recipient))
    iv = rng(16)
    body = (
        bytes((ENVELOPE_VERSION,))
        + ephemeral.public_key.raw
        + iv
        + cbc.encrypt(aes_key, iv, plaintext)
    )
    envelope = body + hmac_sha256(mac_key, body)
    if len(envelope) > MAX_ENVELOPE:
        raise LocalError("provisioning envelope larger than 64 KiB")
    return envelope


def open_provisioning(envelope: bytes, recipient: PrivateKey) -> ProvisionMessage:
    """Check and decrypt an envelope made by :func:`seal_provisioning` for ``recipient``."""
    size = len(envelope)
    if size > MAX_ENVELOPE or size < _HEADER + 16 + _MAC_LEN or (size - _HEADER - _MAC_LEN) % 16:
        raise DecodeError("provisioning envelope has a bad length")
    if envelope[0] != ENVELOPE_VERSION:
        raise DecodeError("unknown provisioning envelope version")
    body, mac = envelope[:-_MAC_LEN], envelope[-_MAC_LEN:]
    try:
        shared = recipient.agree(PublicKey(body[1 : 1 + KEY_LEN]))
    except VeilError:
        raise DecodeError("invalid ephemeral key in provisioning envelope") from None
    aes_key, mac_key = _derive(shared)
    if not constant_time_equal(hmac_sha256(mac_key, body), mac):
        raise BadMacError("provisioning envelope MAC does not verify")
    iv = body[1 + KEY_LEN : _HEADER]
    return decode_provision(cbc.decrypt(aes_key, iv, body[_HEADER:]))


def _derive(shared: bytes) -> tuple[bytes, bytes]:
    okm = hkdf_sha256(shared, b"", _INFO, 64)
    return okm[:32], okm[32:]


# --- link URI -------------------------------------------------------------------------------


def link_uri(provisioning_id: str, public: PublicKey) -> str:
    """``veil-link:<provisioning_id>:<unpadded base64url of the 32-byte key>``."""
    if _ACCOUNT_ID.fullmatch(provisioning_id) is None:
        raise LocalError("provisioning id must be 32 lowercase hex digits")
    key = base64.urlsafe_b64encode(public.raw).rstrip(b"=").decode("ascii")
    return f"{LINK_SCHEME}{provisioning_id}:{key}"


def parse_link_uri(text: str) -> tuple[str, PublicKey]:
    """Inverse of :func:`link_uri`; :class:`DecodeError` on anything else.

    The key must be canonical base64url (43 characters, no padding, zero trailing bits) and a
    canonical X25519 point in the prime-order subgroup, as a fresh key pair's public key is.
    """
    if not isinstance(text, str) or not text.startswith(LINK_SCHEME):
        raise DecodeError("not a veil-link URI")
    parts = text[len(LINK_SCHEME) :].split(":")
    if len(parts) != 2:
        raise DecodeError("a veil-link URI has exactly two parts")
    provisioning_id, encoded = parts
    if _ACCOUNT_ID.fullmatch(provisioning_id) is None:
        raise DecodeError("provisioning id must be 32 lowercase hex digits")
    if _KEY_B64.fullmatch(encoded) is None:
        raise DecodeError("link key must be 43 base64url characters")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=")
    except (binascii.Error, ValueError):
        raise DecodeError("link key is not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != encoded:
        raise DecodeError("link key is not canonical base64url")
    public = PublicKey(raw)
    if not public.is_canonical():
        raise DecodeError("link key is not a valid X25519 public key")
    return provisioning_id, public
