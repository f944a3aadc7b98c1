"""Model-based test of messages and statuses (ARCHITECTURE.md §6.6).

Hypothesis drives a :class:`DeviceStore` and a plain-dict model through adds (duplicates and
ids shared between directions included), status changes in any order, read marks, aborted
transactions and reopening; after every step the timeline, statuses and conversation list
must match the model. The allowed transitions are written out here as a table, independently
of :func:`veil.store.messages.status_may_change`
(``test_messages.NEXT``, also checked against it exhaustively).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from veil.store import DeviceStore, MessageRecord

from .test_messages import NEXT, STATUSES

ME: Final = "acc-me"
CONVERSATIONS: Final = ("acc-a", "acc-b")


@dataclass
class Row:
    record: MessageRecord
    sort_ms: int
    seq: int


LOST: Final = MessageRecord(
    "acc-a", b"\xff" * 16, "in", "acc-a", 1, 0, None, None, "lost", None, None, "received"
)


class AbortedError(Exception):
    pass


class MessageMachine(RuleBasedStateMachine):
    """The store against a list of rows."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="veil-store-sm-"))
        self.store = DeviceStore.open(self.folder / "profile")
        self.rows: list[Row] = []
        self.seq = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def find(self, conversation: str, message_id: bytes) -> list[Row]:
        return [
            r
            for r in self.rows
            if r.record.conversation == conversation and r.record.message_id == message_id
        ]

    @rule(
        conversation=st.sampled_from(CONVERSATIONS),
        outgoing=st.booleans(),
        n=st.integers(0, 4),
        sent_ms=st.integers(0, 50),
        server_ms=st.none() | st.integers(0, 50),
        data=st.data(),
    )
    def add(
        self,
        conversation: str,
        outgoing: bool,
        n: int,
        sent_ms: int,
        server_ms: int | None,
        data: st.DataObject,
    ) -> None:
        direction = "out" if outgoing else "in"
        status = data.draw(st.sampled_from([s for d, s in NEXT if d == direction]))
        record = MessageRecord(
            conversation,
            bytes([n]) * 16,
            direction,
            ME if outgoing else conversation,
            1,
            sent_ms,
            server_ms,
            None,
            f"text {n}",
            None,
            None,
            status,
        )
        new = not any(
            r.record.sender_account_id == record.sender_account_id
            for r in self.find(conversation, record.message_id)
        )
        assert self.store.add_message(record) is new
        if new:
            self.seq += 1
            sort_ms = sent_ms if server_ms is None else server_ms
            self.rows.append(Row(record, sort_ms, self.seq))

    @rule(
        conversation=st.sampled_from(CONVERSATIONS),
        n=st.integers(0, 4),
        status=st.sampled_from(STATUSES),
    )
    def set_status(self, conversation: str, n: int, status: str) -> None:
        changed = False
        for row in self.find(conversation, bytes([n]) * 16):
            if status in NEXT[(row.record.direction, row.record.status)]:
                row.record = _with_status(row.record, status)
                changed = True
        assert self.store.set_status(conversation, bytes([n]) * 16, status) is changed

    @precondition(lambda self: bool(self.rows))
    @rule(data=st.data(), status=st.sampled_from(STATUSES))
    def set_status_of_existing(self, data: st.DataObject, status: str) -> None:
        row = data.draw(st.sampled_from(self.rows))
        self.set_status(row.record.conversation, row.record.message_id[0], status)

    @rule(conversation=st.sampled_from(CONVERSATIONS))
    def mark_read(self, conversation: str) -> None:
        unread = sorted(
            (
                r
                for r in self.rows
                if r.record.conversation == conversation
                and r.record.direction == "in"
                and r.record.status == "received"
            ),
            key=lambda r: (r.sort_ms, r.seq),
        )
        for row in unread:
            row.record = _with_status(row.record, "read")
        assert self.store.mark_read(conversation) == [r.record.message_id for r in unread]

    @rule(conversation=st.sampled_from(CONVERSATIONS), n=st.integers(0, 4))
    def aborted_transaction(self, conversation: str, n: int) -> None:
        with pytest.raises(AbortedError), self.store.transaction():
            self.store.mark_read(conversation)
            self.store.set_status(conversation, bytes([n]) * 16, "read")
            lost = dataclasses.replace(LOST, conversation=conversation)
            self.store.add_message(dataclasses.replace(lost, sender_account_id=conversation))
            raise AbortedError

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = DeviceStore.open(self.folder / "profile")

    @invariant()
    def timelines_match(self) -> None:
        for conversation in CONVERSATIONS:
            expected = sorted(
                (r for r in self.rows if r.record.conversation == conversation),
                key=lambda r: (r.sort_ms, r.seq),
            )
            assert self.store.messages(conversation, limit=1000) == [r.record for r in expected]
            if len(expected) > 2:
                tail = [r.record for r in expected[-2:]]
                assert self.store.messages(conversation, limit=2) == tail

    @invariant()
    def summaries_match(self) -> None:
        summaries = {s.conversation: s for s in self.store.conversations()}
        assert set(summaries) == {r.record.conversation for r in self.rows}
        for conversation, summary in summaries.items():
            mine = [r for r in self.rows if r.record.conversation == conversation]
            last = max(mine, key=lambda r: (r.sort_ms, r.seq))
            assert summary.count == len(mine)
            assert summary.last_ms == last.sort_ms
            assert summary.last_text == last.record.text
            assert summary.unread == sum(
                r.record.direction == "in" and r.record.status == "received" for r in mine
            )


def _with_status(record: MessageRecord, status: str) -> MessageRecord:
    return dataclasses.replace(record, status=status)


MessageMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestMessages = MessageMachine.TestCase
