"""The E2EE payload codec and padding (``veil.core.content``; docs/client-design.md).

* Hypothesis round trip of every body kind (and captions, and syncs of them), byte-stable;
* random bytes and mutations of real encodings decode or raise only :class:`DecodeError`;
* every rule (one body, sizes, UTF-8, ids, version, nested sync) on both sides: encode raises
  :class:`LocalError`, decode of hand-built bytes raises :class:`DecodeError`;
* padding round trip, bucket sizes, and bad pads;
* ``repr`` hides the attachment key and the text;
* call-log entries (sync-only): Hypothesis round trips inside a sync copy, refusal outside
  one, and every rule of the entry on both sides.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veil.core import protobuf as pb
from veil.core.call_log import CALL_DIRECTIONS, CALL_LOG_OUTCOMES, CallLogEntry
from veil.core.content import (
    ACTION_BLOCK,
    MAX_ATTACHMENT_SIZE,
    MAX_NAME_BYTES,
    MAX_RECEIPT_IDS,
    MAX_TEXT_BYTES,
    PAD_BLOCK,
    RECEIPT_READ,
    AttachmentPointer,
    Content,
    ConversationAction,
    Receipt,
    SyncSent,
    TimerUpdate,
    Typing,
    _encode,
    decode_content,
    encode_content,
    new_message_id,
    pad,
    timer_problem,
    unpad,
)
from veil.core.errors import DecodeError, LocalError
from veil.core.rng import Rng, seeded_rng

from .strategies import contents, mutate

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MID = bytes(range(16))
KEY = bytes(32)
ATT = AttachmentPointer("0" * 32, KEY, b"\x11" * 32, 10, "a.txt", "text/plain")

# --- round trips ----------------------------------------------------------------------------


@settings(FUZZ)
@given(contents())
def test_round_trip(content: Content) -> None:
    data = encode_content(content)
    assert decode_content(data) == content
    assert encode_content(decode_content(data)) == data
    assert unpad(pad(data)) == data


def test_sync_carries_a_decodable_content() -> None:
    inner = Content(MID, 5, text="hello")
    outer = Content(bytes(16), 6, sync=SyncSent("ab" * 16, encode_content(inner)))
    decoded = decode_content(encode_content(outer))
    assert decoded.sync is not None
    assert decode_content(decoded.sync.content) == inner


def test_new_message_id(rng: Rng) -> None:
    first, second = new_message_id(rng), new_message_id(rng)
    assert len(first) == 16 and first != second
    assert new_message_id(seeded_rng(1)) == new_message_id(seeded_rng(1))


def test_unknown_fields_are_skipped() -> None:
    data = encode_content(Content(MID, 1, text="hi"))
    assert decode_content(data + pb.field_varint(99, 7) + pb.field_bytes(100, b"x")).text == "hi"


def test_typing_false_round_trips_and_absent_flag_means_false() -> None:
    assert decode_content(encode_content(Content(MID, 1, typing=Typing(False)))).typing == Typing(
        False
    )
    data = _raw(pb.field_bytes(8, b""))
    assert decode_content(data).typing == Typing(False)


def test_repr_hides_key_and_text() -> None:
    content = Content(MID, 1, text="secret words", attachment=ATT)
    shown = repr(content)
    assert "secret words" not in shown and KEY.hex() not in shown and "<hidden>" in shown
    assert "secret" not in repr(SyncSent("0" * 32, b"secret"))


# --- fuzzing: DecodeError and nothing else ---------------------------------------------------


def _decodes_or_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_content(data)


@settings(FUZZ)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    _decodes_or_decode_error(data)


@settings(FUZZ)
@given(st.data())
def test_mutated_contents_raise_only_decode_error(data: st.DataObject) -> None:
    sample = encode_content(data.draw(contents()))
    _decodes_or_decode_error(data.draw(mutate(sample)))


@settings(FUZZ)
@given(st.binary(max_size=400))
def test_unpad_random_bytes_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        unpad(data)


# --- rules, encode side (LocalError) ---------------------------------------------------------

BAD_CONTENTS = {
    "no body": Content(MID, 1),
    "two bodies": Content(MID, 1, text="a", typing=Typing(True)),
    "receipt and attachment": Content(MID, 1, attachment=ATT, receipt=Receipt(1, (MID,))),
    "short message id": Content(MID[:15], 1, text="a"),
    "negative sent_ms": Content(MID, -1, text="a"),
    "sent_ms too big": Content(MID, 2**63, text="a"),
    "long text": Content(MID, 1, text="x" * (MAX_TEXT_BYTES + 1)),
    "long multibyte text": Content(MID, 1, text="é" * (MAX_TEXT_BYTES // 2 + 1)),
    "surrogate text": Content(MID, 1, text="\ud800"),
    "blob id uppercase": Content(MID, 1, attachment=dataclasses.replace(ATT, blob_id="A" * 32)),
    "blob id short": Content(MID, 1, attachment=dataclasses.replace(ATT, blob_id="0" * 31)),
    "key short": Content(MID, 1, attachment=dataclasses.replace(ATT, key=bytes(31))),
    "digest long": Content(MID, 1, attachment=dataclasses.replace(ATT, digest=bytes(33))),
    "size too big": Content(
        MID, 1, attachment=dataclasses.replace(ATT, size=MAX_ATTACHMENT_SIZE + 1)
    ),
    "negative size": Content(MID, 1, attachment=dataclasses.replace(ATT, size=-1)),
    "long file name": Content(
        MID, 1, attachment=dataclasses.replace(ATT, file_name="é" * (MAX_NAME_BYTES // 2 + 1))
    ),
    "long content type": Content(
        MID, 1, attachment=dataclasses.replace(ATT, content_type="x" * (MAX_NAME_BYTES + 1))
    ),
    "receipt kind": Content(MID, 1, receipt=Receipt(3, (MID,))),
    "empty receipt": Content(MID, 1, receipt=Receipt(1, ())),
    "receipt id short": Content(MID, 1, receipt=Receipt(1, (MID[:8],))),
    "too many receipt ids": Content(MID, 1, receipt=Receipt(1, (MID,) * (MAX_RECEIPT_IDS + 1))),
    "sync destination": Content(MID, 1, sync=SyncSent("xyz", encode_content(Content(MID, 1, "a")))),
    "sync of garbage": Content(MID, 1, sync=SyncSent("0" * 32, b"\xff\xff")),
    "sync of sync": Content(
        MID,
        1,
        sync=SyncSent(
            "0" * 32,
            encode_content(
                Content(MID, 1, sync=SyncSent("0" * 32, encode_content(Content(MID, 1, "a"))))
            ),
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_CONTENTS))
def test_encode_refuses_invalid_content(name: str) -> None:
    with pytest.raises(LocalError):
        encode_content(BAD_CONTENTS[name])


def test_limits_themselves_are_accepted() -> None:
    big = AttachmentPointer("f" * 32, KEY, KEY, MAX_ATTACHMENT_SIZE, "n" * 255, "t" * 255)
    for content in (
        Content(MID, 2**63 - 1, text="x" * MAX_TEXT_BYTES, attachment=big),
        Content(MID, 0, receipt=Receipt(RECEIPT_READ, (MID,) * MAX_RECEIPT_IDS)),
        Content(MID, 0, text=""),
    ):
        assert decode_content(encode_content(content)) == content


# --- rules, decode side (DecodeError) on hand-built bytes -----------------------------------


def _raw(
    *body: bytes, version: int = 1, message_id: bytes = MID, sent: bytes | None = None
) -> bytes:
    sent_field = pb.field_varint(3, 1) if sent is None else sent
    head = pb.field_varint(1, version) + pb.field_bytes(2, message_id) + sent_field
    return head + b"".join(body)


def _attachment(**overrides: bytes) -> bytes:
    fields = {
        1: pb.field_bytes(1, b"0" * 32),
        2: pb.field_bytes(2, KEY),
        3: pb.field_bytes(3, KEY),
        4: pb.field_varint(4, 1),
    }
    for number, value in overrides.items():
        fields[int(number[1:])] = value
    return pb.field_bytes(5, b"".join(fields[n] for n in sorted(fields)))


TEXT = pb.field_bytes(4, b"hi")
BAD_BYTES = {
    "empty": b"",
    "version 2": _raw(TEXT, version=2),
    "version 0": _raw(TEXT, version=0),
    "no version": _raw(TEXT)[2:],
    "no message id": pb.field_varint(1, 1) + pb.field_varint(3, 1) + TEXT,
    "message id 17": _raw(TEXT, message_id=bytes(17)),
    "no sent_ms": _raw(TEXT, sent=b""),
    "sent_ms 2^63": _raw(TEXT, sent=pb.field_varint(3, 2**63)),
    "sent_ms as bytes": _raw(TEXT, sent=pb.field_bytes(3, b"\x01")),
    "text as varint": _raw(pb.field_varint(4, 5)),
    "bad utf-8": _raw(pb.field_bytes(4, b"\xc3\x28")),
    "utf-8 surrogate": _raw(pb.field_bytes(4, b"\xed\xa0\x80")),
    "text too long": _raw(pb.field_bytes(4, b"x" * (MAX_TEXT_BYTES + 1))),
    "no body": _raw(),
    "text and typing": _raw(TEXT, pb.field_bytes(8, b"")),
    "only an unknown body": _raw(pb.field_bytes(9, b"reaction")),
    "typing 2": _raw(pb.field_bytes(8, pb.field_varint(1, 2))),
    "typing as bytes": _raw(pb.field_bytes(8, pb.field_bytes(1, b"\x01"))),
    "attachment as varint": _raw(pb.field_varint(5, 1)),
    "attachment not a message": _raw(pb.field_bytes(5, b"\xff")),
    "attachment no key": _raw(_attachment(f2=b"")),
    "attachment key 31": _raw(_attachment(f2=pb.field_bytes(2, bytes(31)))),
    "attachment digest 0": _raw(_attachment(f3=pb.field_bytes(3, b""))),
    "attachment no size": _raw(_attachment(f4=b"")),
    "attachment size 2^31+1": _raw(_attachment(f4=pb.field_varint(4, 2**31 + 1))),
    "blob id not hex": _raw(_attachment(f1=pb.field_bytes(1, b"g" * 32))),
    "blob id bad utf-8": _raw(_attachment(f1=pb.field_bytes(1, b"\xff" * 32))),
    "file name 256": _raw(_attachment(f5=pb.field_bytes(5, b"n" * 256))),
    "file name bad utf-8": _raw(_attachment(f5=pb.field_bytes(5, b"\x80"))),
    "content type 256": _raw(_attachment(f6=pb.field_bytes(6, b"t" * 256))),
    "receipt kind 0": _raw(pb.field_bytes(6, pb.field_varint(1, 0) + pb.field_bytes(2, MID))),
    "receipt no kind": _raw(pb.field_bytes(6, pb.field_bytes(2, MID))),
    "receipt no ids": _raw(pb.field_bytes(6, pb.field_varint(1, 1))),
    "receipt id 15": _raw(pb.field_bytes(6, pb.field_varint(1, 1) + pb.field_bytes(2, MID[:15]))),
    "receipt 1001 ids": _raw(
        pb.field_bytes(6, pb.field_varint(1, 1) + pb.field_bytes(2, MID) * (MAX_RECEIPT_IDS + 1))
    ),
    "sync no content": _raw(pb.field_bytes(7, pb.field_bytes(1, b"0" * 32))),
    "sync bad destination": _raw(
        pb.field_bytes(7, pb.field_bytes(1, b"0" * 31) + pb.field_bytes(2, _raw(TEXT)))
    ),
    "sync of invalid content": _raw(
        pb.field_bytes(7, pb.field_bytes(1, b"0" * 32) + pb.field_bytes(2, _raw()))
    ),
    "sync of sync": _raw(
        pb.field_bytes(
            7,
            pb.field_bytes(1, b"0" * 32)
            + pb.field_bytes(
                2,
                _raw(
                    pb.field_bytes(7, pb.field_bytes(1, b"0" * 32) + pb.field_bytes(2, _raw(TEXT)))
                ),
            ),
        )
    ),
    "group wire type": _raw(TEXT) + b"\x0b",
    "truncated": _raw(TEXT)[:-1],
}


@pytest.mark.parametrize("name", sorted(BAD_BYTES))
def test_decode_refuses(name: str) -> None:
    with pytest.raises(DecodeError):
        decode_content(BAD_BYTES[name])


def test_hand_built_bytes_match_the_encoder() -> None:
    assert decode_content(_raw(TEXT)) == Content(MID, 1, text="hi")
    assert _raw(TEXT) == encode_content(Content(MID, 1, text="hi"))


# --- padding --------------------------------------------------------------------------------


@given(st.binary(max_size=1000))
def test_pad_round_trip(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) % PAD_BLOCK == 0
    assert len(data) < len(padded) <= len(data) + PAD_BLOCK
    assert padded[len(data)] == 0x80 and not any(padded[len(data) + 1 :])
    assert unpad(padded) == data


@pytest.mark.parametrize(("size", "padded"), [(0, 160), (158, 160), (159, 160), (160, 320)])
def test_pad_buckets(size: int, padded: int) -> None:
    assert len(pad(bytes(size))) == padded


BAD_PADS = {
    "empty": b"",
    "not a multiple": b"a\x80" + bytes(157),
    "all zeros": bytes(160),
    "no marker": b"a" * 160,
    "marker then junk": b"a\x80" + b"\x01" + bytes(157),
    "0x81 marker": b"a\x81" + bytes(158),
    "pad longer than a bucket": b"\x80" + bytes(319),
    "one block longer than needed": b"abc\x80" + bytes(316),
}


@pytest.mark.parametrize("name", sorted(BAD_PADS))
def test_unpad_refuses(name: str) -> None:
    with pytest.raises(DecodeError):
        unpad(BAD_PADS[name])


def test_unpad_keeps_trailing_0x80_and_zeros_of_the_payload() -> None:
    data = b"x\x80\x00\x00"
    assert unpad(pad(data)) == data
    assert unpad(pad(b"\x80" * 159)) == b"\x80" * 159


# --- disappearing-message timers and conversation actions (issue 5) -------------------------


@pytest.mark.parametrize("seconds", [0, 5, 30, 3600, 86_400])
def test_timers_in_range_round_trip(seconds: int) -> None:
    update = Content(b"\x01" * 16, 7, timer=TimerUpdate(seconds))
    assert decode_content(encode_content(update)) == update
    if seconds:
        text = Content(b"\x01" * 16, 7, text="hi", expire_timer_s=seconds)
        assert decode_content(encode_content(text)).expire_timer_s == seconds


@pytest.mark.parametrize("seconds", [1, 4, 86_401, 10**9])
def test_timers_out_of_range_are_refused_both_ways(seconds: int) -> None:
    assert timer_problem(seconds) is not None
    for bad in (
        Content(b"\x01" * 16, 7, timer=TimerUpdate(seconds)),
        Content(b"\x01" * 16, 7, text="hi", expire_timer_s=seconds),
    ):
        with pytest.raises(LocalError, match="timer"):
            encode_content(bad)
        raw = _encode(bad)  # what a hostile peer could send
        with pytest.raises(DecodeError, match="timer"):
            decode_content(raw)


def test_only_messages_carry_a_timer() -> None:
    receipt = Content(b"\x01" * 16, 7, receipt=Receipt(RECEIPT_READ, (b"\x02" * 16,)))
    raw = _encode(receipt) + pb.field_varint(10, 30)
    with pytest.raises(DecodeError, match="only a text or attachment"):
        decode_content(raw)


def test_a_conversation_action_travels_only_in_a_sync_copy() -> None:
    action = Content(b"\x01" * 16, 7, action=ConversationAction(ACTION_BLOCK))
    with pytest.raises(LocalError, match="inside a sync"):
        encode_content(action)
    inner = encode_content(action, for_sync=True)
    sync = Content(b"\x01" * 16, 7, sync=SyncSent("a" * 32, inner))
    assert decode_content(encode_content(sync)).sync == SyncSent("a" * 32, inner)
    with pytest.raises(DecodeError, match="inside a sync"):
        decode_content(inner)
    unknown = Content(b"\x01" * 16, 7, action=ConversationAction(9))
    with pytest.raises(LocalError, match="unknown conversation action"):
        encode_content(unknown, for_sync=True)


# --- call-log entries (sync copies of a call's line) -----------------------------------------
_ONE_WAY = {"missed": "incoming", "answered_elsewhere": "incoming"}
_ONE_WAY |= {"busy": "outgoing", "no_answer": "outgoing"}


@st.composite
def call_log_entries(draw: st.DrawFn) -> CallLogEntry:
    """A valid call-log entry: an outcome its direction allows, a duration iff completed."""
    outcome = draw(st.sampled_from(CALL_LOG_OUTCOMES))
    direction = _ONE_WAY.get(outcome) or draw(st.sampled_from(CALL_DIRECTIONS))
    duration = draw(st.integers(0, 2**63 - 1)) if outcome == "completed" else None
    return CallLogEntry(
        call_id=draw(st.binary(min_size=16, max_size=16)),
        direction=direction,
        video=draw(st.booleans()),
        outcome=outcome,
        end_reason=draw(st.from_regex(r"\A[a-z0-9_]{1,32}\Z")),
        duration_ms=duration,
        peer_device=draw(st.integers(0, 127)),
    )


def _synced(entry: CallLogEntry, sent_ms: int = 7) -> tuple[Content, Content]:
    """The inner content of ``entry`` and the sync copy that carries it."""
    inner = Content(MID, sent_ms, call_log=entry)
    copy = Content(MID, sent_ms, sync=SyncSent("c" * 32, encode_content(inner, for_sync=True)))
    return inner, copy


@settings(FUZZ)
@given(call_log_entries(), st.integers(0, 2**63 - 1))
def test_call_log_entries_round_trip_inside_a_sync_copy(entry: CallLogEntry, sent_ms: int) -> None:
    inner, copy = _synced(entry, sent_ms)
    data = encode_content(copy)
    decoded = decode_content(data)
    assert decoded == copy and encode_content(decoded) == data
    assert decoded.sync is not None
    assert decode_content(decoded.sync.content, for_sync=True) == inner


@settings(FUZZ)
@given(call_log_entries(), st.data())
def test_mutated_call_log_entries_raise_only_decode_error(
    entry: CallLogEntry, data: st.DataObject
) -> None:
    inner = encode_content(Content(MID, 7, call_log=entry), for_sync=True)
    with contextlib.suppress(DecodeError):
        decode_content(data.draw(mutate(inner)), for_sync=True)


def test_a_call_log_entry_travels_only_in_a_sync_copy() -> None:
    entry = CallLogEntry(MID, "outgoing", True, "completed", "hangup", 83_000, 2)
    inner, copy = _synced(entry)
    with pytest.raises(LocalError, match="call-log entry travels only inside a sync"):
        encode_content(inner)
    raw = encode_content(inner, for_sync=True)  # what a hostile peer could send directly
    with pytest.raises(DecodeError, match="call-log entry travels only inside a sync"):
        decode_content(raw)
    assert decode_content(encode_content(copy)) == copy
    with pytest.raises(LocalError, match="exactly one body"):
        encode_content(dataclasses.replace(inner, text="and a text"), for_sync=True)


def test_hand_built_call_log_bytes_match_the_encoder() -> None:
    entry = CallLogEntry(MID, "incoming", False, "declined", "rejected", None, 3)
    fields = (
        pb.field_bytes(1, MID) + pb.field_varint(2, 2) + pb.field_varint(4, 3)
        + pb.field_bytes(5, b"rejected") + pb.field_varint(7, 3)
    )  # fmt: skip
    raw = _raw(pb.field_bytes(14, fields))
    assert encode_content(Content(MID, 1, call_log=entry), for_sync=True) == raw
    assert decode_content(raw, for_sync=True).call_log == entry


BAD_CALL_LOGS = {
    "short call id": (dict(call_id=b"\x01" * 15), "16 bytes"),
    "unknown direction": (dict(direction="sideways"), "unknown call direction"),
    "unknown outcome": (dict(outcome="lost"), "unknown call direction or outcome"),
    "outgoing missed": (dict(outcome="missed", duration_ms=None), "cannot end missed"),
    "incoming no answer": (
        dict(direction="incoming", outcome="no_answer", duration_ms=None),
        "cannot end no_answer",
    ),
    "empty end reason": (dict(end_reason=""), "end reason"),
    "end reason with a space": (dict(end_reason="hang up"), "end reason"),
    "completed without duration": (dict(duration_ms=None), "duration exactly when"),
    "declined with duration": (dict(outcome="declined"), "duration exactly when"),
    "negative duration": (dict(duration_ms=-1), "out of range"),
    "peer device 128": (dict(peer_device=128), "peer device"),
}


@pytest.mark.parametrize("name", sorted(BAD_CALL_LOGS))
def test_invalid_call_log_entries_are_refused_both_ways(name: str) -> None:
    changes, error = BAD_CALL_LOGS[name]
    good = CallLogEntry(MID, "outgoing", False, "completed", "hangup", 1000, 2)
    bad = Content(MID, 7, call_log=dataclasses.replace(good, **changes))  # type: ignore[arg-type]
    with pytest.raises(LocalError, match=error):
        encode_content(bad, for_sync=True)
    if name in ("unknown direction", "unknown outcome", "negative duration"):
        return  # not representable on the wire: the decoder's own checks below
    with pytest.raises(DecodeError, match=error):
        decode_content(_encode(bad), for_sync=True)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (pb.field_varint(2, 3) + pb.field_varint(4, 1), "unknown call direction"),
        (pb.field_varint(2, 1) + pb.field_varint(4, 9), "unknown call direction or outcome"),
        (pb.field_varint(2, 1) + pb.field_varint(4, 3) + pb.field_varint(3, 2), "video flag"),
        (pb.field_varint(2, 1) + pb.field_varint(4, 3), "end reason"),
        (pb.field_varint(4, 3) + pb.field_bytes(5, b"x"), "call direction"),
    ],
)
def test_malformed_call_log_bytes_are_refused(fields: bytes, error: str) -> None:
    raw = _raw(pb.field_bytes(14, pb.field_bytes(1, MID) + fields))
    with pytest.raises(DecodeError, match=error):
        decode_content(raw, for_sync=True)
