"""Device linking (``veil.core.provisioning``; docs/client-design.md "Identity and devices").

* Hypothesis round trip of :class:`ProvisionMessage` through the codec and through
  seal/open; random and mutated bytes raise only :class:`DecodeError`;
* the envelope's layout is the documented one; a wrong recipient key or any tampered byte
  raises :class:`BadMacError`; bad lengths and versions raise :class:`DecodeError`;
* link URIs round-trip and every malformed one raises :class:`DecodeError`;
* ``repr`` hides the identity key and the linking code.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veil.core import protobuf as pb
from veil.core.crypto import cbc
from veil.core.crypto.kdf import hkdf_sha256, hmac_sha256
from veil.core.crypto.x25519 import PrivateKey, PublicKey
from veil.core.errors import BadMacError, DecodeError, LocalError
from veil.core.provisioning import (
    MAX_CONTACTS,
    MAX_ENVELOPE,
    ProvisionMessage,
    decode_provision,
    encode_provision,
    link_uri,
    open_provisioning,
    parse_link_uri,
    seal_provisioning,
)
from veil.core.rng import Rng, seeded_rng

from .strategies import HEX32, USERNAME, mutate

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MESSAGES = st.builds(
    ProvisionMessage,
    identity_private=st.binary(min_size=32, max_size=32),
    account_id=HEX32,
    username=USERNAME,
    linking_code=st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"),
    contacts=st.lists(st.tuples(HEX32, USERNAME), max_size=8, unique_by=lambda c: c[0]).map(tuple),
)
MSG = ProvisionMessage(
    identity_private=b"\x07" * 32,
    account_id="0123456789abcdef" * 2,
    username="alice.b",
    linking_code="Code_-123",
    contacts=(("f" * 32, "bob"), ("e" * 32, "Carol_9")),
)
NEW_DEVICE = PrivateKey.generate(seeded_rng(b"new device"))

# --- codec ----------------------------------------------------------------------------------


@settings(FUZZ)
@given(MESSAGES)
def test_codec_round_trip(message: ProvisionMessage) -> None:
    data = encode_provision(message)
    assert decode_provision(data) == message
    assert encode_provision(decode_provision(data)) == data


@settings(FUZZ)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_provision(data)


@settings(FUZZ)
@given(st.data())
def test_mutated_messages_raise_only_decode_error(data: st.DataObject) -> None:
    sample = encode_provision(data.draw(MESSAGES))
    with contextlib.suppress(DecodeError):
        decode_provision(data.draw(mutate(sample)))


def test_repr_hides_secrets() -> None:
    shown = repr(MSG)
    assert MSG.identity_private.hex() not in shown and "Code_-123" not in shown
    assert "alice.b" in shown


BAD_MESSAGES = {
    "key 31": dataclasses.replace(MSG, identity_private=bytes(31)),
    "account uppercase": dataclasses.replace(MSG, account_id="A" * 32),
    "username short": dataclasses.replace(MSG, username="ab"),
    "username digit first": dataclasses.replace(MSG, username="1abc"),
    "username 33": dataclasses.replace(MSG, username="a" * 33),
    "code empty": dataclasses.replace(MSG, linking_code=""),
    "code 65": dataclasses.replace(MSG, linking_code="a" * 65),
    "code with =": dataclasses.replace(MSG, linking_code="abc="),
    "contact account": dataclasses.replace(MSG, contacts=(("x" * 32, "bob"),)),
    "contact username": dataclasses.replace(MSG, contacts=(("f" * 32, "b"),)),
    "duplicate contact": dataclasses.replace(MSG, contacts=(("f" * 32, "bob"),) * 2),
    "too many contacts": dataclasses.replace(
        MSG, contacts=tuple((f"{i:032x}", "bob") for i in range(MAX_CONTACTS + 1))
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_encode_refuses(name: str) -> None:
    with pytest.raises(LocalError):
        encode_provision(BAD_MESSAGES[name])


def _raw(*fields: bytes, version: int = 1) -> bytes:
    return pb.field_varint(1, version) + b"".join(fields)


KEYF = pb.field_bytes(2, bytes(32))
ACCOUNT = pb.field_bytes(3, b"0" * 32)
USER = pb.field_bytes(4, b"alice")
CODE = pb.field_bytes(5, b"code")
BAD_BYTES = {
    "empty": b"",
    "version 2": _raw(KEYF, ACCOUNT, USER, CODE, version=2),
    "no key": _raw(ACCOUNT, USER, CODE),
    "no account": _raw(KEYF, USER, CODE),
    "no username": _raw(KEYF, ACCOUNT, CODE),
    "no code": _raw(KEYF, ACCOUNT, USER),
    "key 33": _raw(pb.field_bytes(2, bytes(33)), ACCOUNT, USER, CODE),
    "key as varint": _raw(pb.field_varint(2, 1), ACCOUNT, USER, CODE),
    "non-ascii username": _raw(KEYF, ACCOUNT, pb.field_bytes(4, "alicé".encode()), CODE),
    "bad utf-8 code": _raw(KEYF, ACCOUNT, USER, pb.field_bytes(5, b"\xff\xfe")),
    "contact without username": _raw(
        KEYF, ACCOUNT, USER, CODE, pb.field_bytes(6, pb.field_bytes(1, b"0" * 32))
    ),
    "contact as varint": _raw(KEYF, ACCOUNT, USER, CODE, pb.field_varint(6, 1)),
    "too many contacts": _raw(
        KEYF,
        ACCOUNT,
        USER,
        CODE,
        pb.field_bytes(6, pb.field_bytes(1, b"0" * 32) + pb.field_bytes(2, b"bob"))
        * (MAX_CONTACTS + 1),
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_BYTES))
def test_decode_refuses(name: str) -> None:
    with pytest.raises(DecodeError):
        decode_provision(BAD_BYTES[name])


def test_hand_built_bytes_decode() -> None:
    message = decode_provision(_raw(KEYF, ACCOUNT, USER, CODE, pb.field_varint(42, 1)))
    assert message == ProvisionMessage(bytes(32), "0" * 32, "alice", "code")


def test_largest_message_fits_the_server_mailbox(rng: Rng) -> None:
    contacts = tuple((f"{i:032x}", "u" * 32) for i in range(MAX_CONTACTS))
    big = dataclasses.replace(MSG, username="a" * 32, linking_code="c" * 64, contacts=contacts)
    envelope = seal_provisioning(big, NEW_DEVICE.public_key, rng)
    assert len(envelope) <= MAX_ENVELOPE
    assert open_provisioning(envelope, NEW_DEVICE) == big


# --- envelope -------------------------------------------------------------------------------


@settings(FUZZ, max_examples=50)
@given(MESSAGES, st.integers(0, 2**32))
def test_seal_open_round_trip(message: ProvisionMessage, seed: int) -> None:
    recipient = PrivateKey.generate(seeded_rng(seed))
    envelope = seal_provisioning(message, recipient.public_key, seeded_rng(seed + 1))
    assert open_provisioning(envelope, recipient) == message


def test_envelope_layout(rng: Rng) -> None:
    envelope = seal_provisioning(MSG, NEW_DEVICE.public_key, rng)
    assert envelope[0] == 1
    ephemeral = PublicKey(envelope[1:33])
    okm = hkdf_sha256(NEW_DEVICE.agree(ephemeral), b"", b"veil provisioning v1", 64)
    assert envelope[-32:] == hmac_sha256(okm[32:], envelope[:-32])
    assert cbc.decrypt(okm[:32], envelope[33:49], envelope[49:-32]) == encode_provision(MSG)


def test_seal_is_deterministic_given_the_rng_and_fresh_otherwise(rng: Rng) -> None:
    assert seal_provisioning(MSG, NEW_DEVICE.public_key, seeded_rng(5)) == seal_provisioning(
        MSG, NEW_DEVICE.public_key, seeded_rng(5)
    )
    first = seal_provisioning(MSG, NEW_DEVICE.public_key, rng)
    assert first != seal_provisioning(MSG, NEW_DEVICE.public_key, rng)


def test_wrong_recipient_fails(rng: Rng) -> None:
    envelope = seal_provisioning(MSG, NEW_DEVICE.public_key, rng)
    with pytest.raises(BadMacError) as info:
        open_provisioning(envelope, PrivateKey.generate(rng))
    assert NEW_DEVICE.secret_bytes().hex() not in str(info.value)


def test_every_tampered_byte_fails(rng: Rng) -> None:
    envelope = seal_provisioning(MSG, NEW_DEVICE.public_key, rng)
    for pos in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[pos] ^= 0x01
        expected = DecodeError if pos == 0 else BadMacError  # byte 0 is the version
        with pytest.raises(expected):
            open_provisioning(bytes(tampered), NEW_DEVICE)


def test_small_order_ephemeral_is_a_decode_error(rng: Rng) -> None:
    envelope = bytearray(seal_provisioning(MSG, NEW_DEVICE.public_key, rng))
    envelope[1:33] = bytes(32)  # u = 0, small order: all-zero shared secret
    with pytest.raises(DecodeError):
        open_provisioning(bytes(envelope), NEW_DEVICE)


@pytest.mark.parametrize("cut", [-1, -15, -17, 1])
def test_bad_lengths_fail(cut: int, rng: Rng) -> None:
    envelope = seal_provisioning(MSG, NEW_DEVICE.public_key, rng)
    bad = envelope[:cut] if cut < 0 else envelope[: 97 - 16]
    with pytest.raises(DecodeError):
        open_provisioning(bad, NEW_DEVICE)
    with pytest.raises(DecodeError):
        open_provisioning(bytes(MAX_ENVELOPE + 16 + 1), NEW_DEVICE)


def test_valid_mac_over_garbage_is_a_decode_error(rng: Rng) -> None:
    """A sender holding the shared secret can MAC anything; the plaintext is still checked."""
    ephemeral = PrivateKey.generate(rng)
    okm = hkdf_sha256(ephemeral.agree(NEW_DEVICE.public_key), b"", b"veil provisioning v1", 64)
    iv = rng(16)
    body = b"\x01" + ephemeral.public_key.raw + iv + cbc.encrypt(okm[:32], iv, b"\xff\xff")
    with pytest.raises(DecodeError):
        open_provisioning(body + hmac_sha256(okm[32:], body), NEW_DEVICE)


@settings(FUZZ)
@given(st.data())
def test_mutated_envelopes_raise_only_remote_errors(data: st.DataObject) -> None:
    envelope = seal_provisioning(MSG, NEW_DEVICE.public_key, seeded_rng(9))
    with contextlib.suppress(DecodeError, BadMacError):
        open_provisioning(data.draw(mutate(envelope)), NEW_DEVICE)


# --- link URI -------------------------------------------------------------------------------

PID = "0123456789abcdef" * 2


@settings(FUZZ)
@given(HEX32, st.integers(0, 2**32))
def test_link_uri_round_trip(provisioning_id: str, seed: int) -> None:
    public = PrivateKey.generate(seeded_rng(seed)).public_key
    uri = link_uri(provisioning_id, public)
    assert uri.startswith("veil-link:") and "=" not in uri
    assert parse_link_uri(uri) == (provisioning_id, public)


def test_link_uri_format() -> None:
    public = NEW_DEVICE.public_key
    key = base64.urlsafe_b64encode(public.raw).decode().rstrip("=")
    assert link_uri(PID, public) == f"veil-link:{PID}:{key}"
    with pytest.raises(LocalError):
        link_uri("ABC", public)


GOOD_KEY = link_uri(PID, NEW_DEVICE.public_key).rsplit(":", 1)[1]
_last_bits_set = (
    GOOD_KEY[:-1]
    + (
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(GOOD_KEY[-1])
            | 1
        ]
    )
)
BAD_URIS = {
    "empty": "",
    "scheme only": "veil-link:",
    "other scheme": f"veil-lnk:{PID}:{GOOD_KEY}",
    "uppercase scheme": f"VEIL-LINK:{PID}:{GOOD_KEY}",
    "no key": f"veil-link:{PID}",
    "empty key": f"veil-link:{PID}:",
    "extra part": f"veil-link:{PID}:{GOOD_KEY}:x",
    "uppercase id": f"veil-link:{PID.upper()}:{GOOD_KEY}",
    "short id": f"veil-link:{PID[:-1]}:{GOOD_KEY}",
    "padded key": f"veil-link:{PID}:{GOOD_KEY}=",
    "standard base64": f"veil-link:{PID}:{GOOD_KEY.replace('-', '+').replace('_', '/')}+",
    "short key": f"veil-link:{PID}:{GOOD_KEY[:-1]}",
    "long key": f"veil-link:{PID}:{GOOD_KEY}A",
    "non-canonical trailing bits": f"veil-link:{PID}:{_last_bits_set}",
    "space": f" veil-link:{PID}:{GOOD_KEY}",
    "newline": f"veil-link:{PID}:{GOOD_KEY}\n",
    "zero key": f"veil-link:{PID}:{'A' * 43}",
    "key u = p": "veil-link:{}:{}".format(
        PID,
        base64.urlsafe_b64encode((2**255 - 19).to_bytes(32, "little")).decode().rstrip("="),
    ),
    "non-ascii digit id": f"veil-link:{'٠' * 32}:{GOOD_KEY}",
}


@pytest.mark.parametrize("name", sorted(BAD_URIS))
def test_parse_link_uri_refuses(name: str) -> None:
    with pytest.raises(DecodeError):
        parse_link_uri(BAD_URIS[name])


@settings(FUZZ)
@given(st.text(max_size=120))
def test_parse_link_uri_random_text(text: str) -> None:
    with contextlib.suppress(DecodeError):
        parse_link_uri(text)
