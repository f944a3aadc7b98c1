"""Hypothesis strategies shared by the core payload tests (content, provisioning)."""

from __future__ import annotations

from hypothesis import strategies as st

from veil.core.call_signal import KINDS, CallSignal
from veil.core.content import (
    ACTIONS,
    MAX_TIMER_S,
    MIN_TIMER_S,
    RECEIPT_DELIVERED,
    RECEIPT_READ,
    AttachmentPointer,
    Content,
    ConversationAction,
    Receipt,
    SessionReset,
    SyncSent,
    TimerUpdate,
    Typing,
    encode_content,
)

HEX32 = st.text("0123456789abcdef", min_size=32, max_size=32)
USERNAME = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_.]{2,31}\Z")
MESSAGE_ID = st.binary(min_size=16, max_size=16)
NAME = st.text(max_size=60)  # at most 240 UTF-8 bytes, within the 255-byte limit

ATTACHMENTS = st.builds(
    AttachmentPointer,
    blob_id=HEX32,
    key=st.binary(min_size=32, max_size=32),
    digest=st.binary(min_size=32, max_size=32),
    size=st.integers(0, 2**31),
    file_name=NAME,
    content_type=NAME,
)
RECEIPTS = st.builds(
    Receipt,
    kind=st.sampled_from([RECEIPT_DELIVERED, RECEIPT_READ]),
    message_ids=st.lists(MESSAGE_ID, min_size=1, max_size=20).map(tuple),
)
TYPINGS = st.builds(Typing, st.booleans())
TIMERS = st.one_of(st.just(0), st.integers(MIN_TIMER_S, MAX_TIMER_S))
_LINE = st.text(st.characters(blacklist_characters="\n", codec="utf-8"), min_size=1, max_size=60)


@st.composite
def _call(draw: st.DrawFn) -> CallSignal:
    kind = draw(st.sampled_from(sorted(KINDS)))
    media = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    return CallSignal(
        draw(st.binary(min_size=16, max_size=16)),
        kind,
        sdp=draw(_LINE) if kind in ("offer", "answer") else "",
        candidates=tuple(draw(st.lists(_LINE, min_size=1, max_size=4))) if kind == "ice" else (),
        audio=media[0] if kind == "offer" else draw(st.booleans()),
        video=media[1] if kind == "offer" else draw(st.booleans()),
        reason=draw(st.from_regex(r"\A[a-z0-9_]{0,32}\Z")),
        device_id=draw(st.integers(1, 127)) if kind == "answered" else 0,
    )


CALLS = _call()
OWN_REJECTS = st.builds(CallSignal, st.binary(min_size=16, max_size=16), st.just("reject"))
"""The one call signal a sync copy carries: our device declined (our others stop ringing)."""


@st.composite
def contents(draw: st.DrawFn, *, allow_sync: bool = True, nested: bool = False) -> Content:
    """A valid Content with one body (or a captioned attachment); ``nested``: one that may
    go inside a sync copy (conversation actions too)."""
    kinds = ["text", "attachment", "caption", "receipt", "typing", "reset", "timer", "call"]
    kinds += ["action"] if nested else []
    kind = draw(st.sampled_from([*kinds, "sync"] if allow_sync else kinds))
    text = draw(st.text(max_size=200)) if kind in ("text", "caption") else None
    attachment = draw(ATTACHMENTS) if kind in ("attachment", "caption") else None
    receipt = draw(RECEIPTS) if kind == "receipt" else None
    typing = draw(TYPINGS) if kind == "typing" else None
    reset = SessionReset(draw(st.integers(1, 127))) if kind == "reset" else None
    timer = TimerUpdate(draw(TIMERS)) if kind == "timer" else None
    action = ConversationAction(draw(st.sampled_from(ACTIONS))) if kind == "action" else None
    expire = draw(TIMERS) if kind in ("text", "attachment", "caption") else 0
    sync = None
    if kind == "sync":
        inner = draw(contents(allow_sync=False, nested=True))
        sync = SyncSent(draw(HEX32), encode_content(inner, for_sync=True))
    return Content(
        draw(MESSAGE_ID),
        draw(st.integers(0, 2**63 - 1)),
        text=text,
        attachment=attachment,
        receipt=receipt,
        sync=sync,
        typing=typing,
        reset=reset,
        expire_timer_s=expire,
        timer=timer,
        action=action,
        call=(draw(OWN_REJECTS if nested else CALLS) if kind == "call" else None),
    )


@st.composite
def mutate(draw: st.DrawFn, sample: bytes) -> bytes:
    """``sample`` with 1-4 random edits: bit flips, byte sets, truncation, insertion, deletion."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        n = len(data)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip" and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and n:
            del data[pos : pos + draw(st.integers(1, 4))]
    return bytes(data)
