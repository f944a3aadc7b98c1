"""Message franking (``veil.core.franking``): franking tags, reporting tags, report checks.

* frank / open_franked round trip (Hypothesis) and the franking tag's commitment;
* a report verifies only for the exact content, franking key, context, key id and secret:
  altered content, altered context fields, another key id, a forged tag all fail;
* malformed inputs: open_franked raises only DecodeError, encode refuses bad contexts;
* ``repr`` hides the franking key and the plaintext.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veil.core import protobuf as pb
from veil.core.content import Content, encode_content
from veil.core.errors import DecodeError, LocalError
from veil.core.franking import (
    KEY_LEN,
    Franked,
    Opened,
    ReportingContext,
    check_franking_tag,
    check_report,
    frank,
    franking_tag,
    open_franked,
    reporting_tag,
)
from veil.core.rng import seeded_rng

ALICE = "a" * 32
BOB = "b" * 32
SECRET = bytes(range(32))
CONTENT = encode_content(Content(message_id=bytes(16), sent_ms=1_700_000_000_000, text="hi"))


def _context(tag: bytes, **changes: object) -> ReportingContext:
    context = ReportingContext(tag, ALICE, 2, BOB, 1, 1_700_000_000_123)
    return dataclasses.replace(context, **changes)  # type: ignore[arg-type]


def _delivered(seed: int = 1) -> tuple[bytes, bytes, bytes, ReportingContext]:
    """What a recipient ends up with: content, Kf, the server's tag, and its context."""
    franked = frank(CONTENT, seeded_rng(seed))
    opened = open_franked(franked.plaintext)
    context = _context(franked.tag)
    return opened.content, opened.key, reporting_tag(SECRET, 7, context), context


@given(st.binary(max_size=2000), st.integers(0, 2**32))
def test_frank_round_trip(content: bytes, seed: int) -> None:
    franked = frank(content, seeded_rng(seed))
    opened = open_franked(franked.plaintext)
    assert opened.content == content and len(opened.key) == KEY_LEN
    assert franked.tag == hmac.digest(opened.key, content, "sha256")
    assert check_franking_tag(opened.key, content, franked.tag)
    assert not check_franking_tag(opened.key, content + b"x", franked.tag)


def test_fresh_key_per_message() -> None:
    rng = seeded_rng(5)
    one, two = frank(CONTENT, rng), frank(CONTENT, rng)
    assert one.tag != two.tag
    assert open_franked(one.plaintext).key != open_franked(two.plaintext).key


def test_reporting_tag_is_hmac_over_the_documented_encoding() -> None:
    tag = bytes(range(100, 132))
    expected_input = (
        b"veil report v1"
        + struct.pack(">I", 7)
        + tag
        + ALICE.encode()
        + bytes([2])
        + BOB.encode()
        + bytes([1])
        + struct.pack(">Q", 1_700_000_000_123)
    )
    assert reporting_tag(SECRET, 7, _context(tag)) == hmac.digest(SECRET, expected_input, "sha256")


def test_valid_report_verifies() -> None:
    content, key, tag, context = _delivered()
    assert check_report(SECRET, 7, content, key, tag, context) is None
    # The context's franking tag is recomputed, never taken from the reporter.
    assert check_report(SECRET, 7, content, key, tag, _context(bytes(32))) is None


def test_altered_content_fails() -> None:
    content, key, tag, context = _delivered()
    altered = encode_content(Content(message_id=bytes(16), sent_ms=1_700_000_000_000, text="hI"))
    assert check_report(SECRET, 7, altered, key, tag, context) is not None
    assert check_report(SECRET, 7, content + b"\x00", key, tag, context) is not None


@pytest.mark.parametrize(
    "changes",
    [
        {"sender_account_id": "c" * 32},
        {"sender_device_id": 3},
        {"recipient_account_id": "c" * 32},
        {"recipient_device_id": 2},
        {"server_ms": 1_700_000_000_124},
    ],
)
def test_altered_context_fails(changes: dict[str, object]) -> None:
    content, key, tag, context = _delivered()
    problem = check_report(SECRET, 7, content, key, tag, _context(context.franking_tag, **changes))
    assert problem == "the reporting tag does not match (altered content or context, or forged)"


def test_wrong_key_id_wrong_secret_wrong_franking_key_fail() -> None:
    content, key, tag, context = _delivered()
    assert check_report(SECRET, 8, content, key, tag, context) is not None
    assert check_report(bytes(32), 7, content, key, tag, context) is not None
    assert check_report(SECRET, 7, content, bytes(32), tag, context) is not None


def test_forged_tags_fail() -> None:
    content, key, tag, context = _delivered()
    forged = bytes([tag[0] ^ 1]) + tag[1:]
    assert check_report(SECRET, 7, content, key, forged, context) is not None
    assert check_report(SECRET, 7, content, key, bytes(32), context) is not None
    assert check_report(SECRET, 7, content, key, tag[:31], context) == (
        "reporting tag must be 32 bytes"
    )
    assert check_report(SECRET, 7, content, key[:31], tag, context) == (
        "franking key must be 32 bytes"
    )
    # A tag made for someone else's copy does not verify for mine.
    other = reporting_tag(SECRET, 7, _context(context.franking_tag, recipient_device_id=2))
    assert check_report(SECRET, 7, content, key, other, context) is not None


@given(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**31 - 1),
    st.integers(1, 127),
    st.integers(1, 127),
    st.integers(0, 2**63 - 1),
)
def test_report_round_trip(
    secret: bytes, kf: bytes, key_id: int, sender_dev: int, recipient_dev: int, ms: int
) -> None:
    context = ReportingContext(franking_tag(kf, CONTENT), ALICE, sender_dev, BOB, recipient_dev, ms)
    tag = reporting_tag(secret, key_id, context)
    assert check_report(secret, key_id, CONTENT, kf, tag, context) is None
    if key_id > 0:
        assert check_report(secret, key_id - 1, CONTENT, kf, tag, context) is not None


@pytest.mark.parametrize(
    ("changes", "key_id"),
    [
        ({"franking_tag": bytes(31)}, 1),
        ({"sender_account_id": "a" * 31}, 1),
        ({"recipient_account_id": "é" * 32}, 1),
        ({"sender_device_id": 0}, 1),
        ({"recipient_device_id": 256}, 1),
        ({"server_ms": -1}, 1),
        ({}, -1),
        ({}, 2**31),
    ],
)
def test_bad_contexts_are_refused(changes: dict[str, object], key_id: int) -> None:
    with pytest.raises(LocalError):
        reporting_tag(SECRET, key_id, _context(bytes(32), **changes))


def test_short_secret_and_key_are_refused() -> None:
    with pytest.raises(LocalError):
        reporting_tag(bytes(31), 1, _context(bytes(32)))
    with pytest.raises(LocalError):
        franking_tag(bytes(31), CONTENT)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        b"\xff",
        pb.field_bytes(1, CONTENT),
        pb.field_bytes(1, CONTENT) + pb.field_bytes(2, bytes(31)),
        pb.field_bytes(2, bytes(32)),
    ],
)
def test_open_franked_rejects_malformed(plaintext: bytes) -> None:
    with pytest.raises(DecodeError):
        open_franked(plaintext)


@given(st.binary(max_size=200))
def test_open_franked_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        open_franked(data)


def test_repr_hides_secrets() -> None:
    franked = frank(b"secret words", seeded_rng(3))
    opened = open_franked(franked.plaintext)
    assert isinstance(franked, Franked) and isinstance(opened, Opened)
    for text in (repr(franked), repr(opened)):
        assert "secret words" not in text
        assert opened.key.hex() not in text and repr(opened.key) not in text
    assert "<hidden>" in repr(opened)
