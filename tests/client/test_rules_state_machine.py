"""Model-based test of the conversation rules on a device (veil.engine.incoming + the store):
random arrivals (tagged as requests or not, with timers), our own sync copies, accept /
decline / block / unblock, reading and the clock, against a plain Python model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from tempfile import mkdtemp

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from veil.core import content as payload
from veil.engine import IncomingEnvelope, MessageReceived, TypingChanged
from veil.engine.incoming import Applier, apply_action
from veil.store import DeviceStore

ME = "a" * 32
PEERS = ("b" * 32, "c" * 32)
TIMERS = st.sampled_from([0, 5, 60])
T0 = 1_700_000_000_000


@dataclass
class Message:
    direction: str
    timer: int
    expire_at: int | None
    read: bool = False


@dataclass
class Model:
    states: dict[str, str] = field(default_factory=dict)
    timers: dict[str, int] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    messages: dict[str, dict[bytes, Message]] = field(default_factory=dict)


class ConversationRules(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = DeviceStore.open(Path(mkdtemp()) / "profile")
        self.model = Model()
        self.now = T0
        self.counter = 0

    def teardown(self) -> None:
        self.store.close()

    def _next_id(self) -> bytes:
        self.counter += 1
        return self.counter.to_bytes(16, "big")

    def _envelope(self, sender: str, request: bool) -> IncomingEnvelope:
        return IncomingEnvelope(self.counter, sender, 1, self.now, 2, b"", request=request)

    def _apply(self, sender: str, content: payload.Content, request: bool) -> list[object]:
        applier = Applier(self.store, ME, self.now)
        with self.store.transaction():
            events = applier.apply(self._envelope(sender, request), content, b"evidence")
        assert applier.blocked == (sender in self.model.blocked and sender != ME)
        return list(events)

    def _arrival_state(self, peer: str, tagged: bool) -> str:
        return self.model.states.setdefault(peer, "request" if tagged else "accepted")

    @rule(peer=st.sampled_from(PEERS), tagged=st.booleans(), timer=TIMERS)
    def a_message_arrives(self, peer: str, tagged: bool, timer: int) -> None:
        message_id = self._next_id()
        text = payload.Content(message_id, self.now, text="hi", expire_timer_s=timer)
        events = self._apply(peer, text, tagged)
        if peer in self.model.blocked:
            assert events == []
            return
        state = self._arrival_state(peer, tagged)
        self.model.messages.setdefault(peer, {})[message_id] = Message("in", timer, None)
        [event] = events
        assert isinstance(event, MessageReceived)
        assert event.request == (state == "request") and event.expire_timer_s == timer

    @rule(peer=st.sampled_from(PEERS), tagged=st.booleans(), seconds=TIMERS)
    def the_peer_sets_the_timer(self, peer: str, tagged: bool, seconds: int) -> None:
        update = payload.Content(self._next_id(), self.now, timer=payload.TimerUpdate(seconds))
        events = self._apply(peer, update, tagged)
        if peer in self.model.blocked:
            assert events == []
            return
        self._arrival_state(peer, tagged)
        self.model.timers[peer] = seconds
        self.model.messages.setdefault(peer, {})[update.message_id] = Message("in", 0, None, True)
        assert len(events) == 1

    @rule(peer=st.sampled_from(PEERS), started=st.booleans())
    def the_peer_types(self, peer: str, started: bool) -> None:
        typing = payload.Content(self._next_id(), self.now, typing=payload.Typing(started))
        events = self._apply(peer, typing, False)
        shown = peer not in self.model.blocked and self.model.states.get(peer) != "request"
        assert [isinstance(e, TypingChanged) for e in events] == ([True] if shown else [])

    @rule(peer=st.sampled_from(PEERS), timer=TIMERS)
    def another_device_of_ours_sent(self, peer: str, timer: int) -> None:
        inner = payload.Content(self._next_id(), self.now, text="mine", expire_timer_s=timer)
        copy = payload.Content(
            inner.message_id,
            self.now,
            sync=payload.SyncSent(peer, payload.encode_content(inner, for_sync=True)),
        )
        self._apply(ME, copy, False)
        self.model.states.setdefault(peer, "accepted")
        expire_at = self.now + timer * 1000 if timer else None
        self.model.messages.setdefault(peer, {})[inner.message_id] = Message(
            "out", timer, expire_at, True
        )

    @rule(peer=st.sampled_from(PEERS), action=st.sampled_from(payload.ACTIONS))
    def we_act(self, peer: str, action: int) -> None:
        with self.store.transaction():
            apply_action(self.store, peer, action, self.now)
        if action == payload.ACTION_ACCEPT:
            self.model.states[peer] = "accepted"
        elif action == payload.ACTION_DECLINE:
            self.model.states.pop(peer, None)
            self.model.timers.pop(peer, None)
            self.model.messages.pop(peer, None)
        elif action == payload.ACTION_BLOCK:
            self.model.blocked.add(peer)
        else:
            self.model.blocked.discard(peer)

    @rule(peer=st.sampled_from(PEERS))
    def we_read(self, peer: str) -> None:
        read = self.store.mark_read(peer, self.now)
        expected = []
        for message_id, m in self.model.messages.get(peer, {}).items():
            if m.direction == "in" and not m.read:
                m.read = True
                expected.append(message_id)
                if m.timer:
                    m.expire_at = self.now + m.timer * 1000
        assert sorted(read) == sorted(expected)

    @rule(seconds=st.sampled_from([1, 4, 30, 3600]))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds * 1000
        gone = 0
        for messages in self.model.messages.values():
            for message_id in [i for i, m in messages.items() if m.expire_at is not None]:
                if messages[message_id].expire_at <= self.now:  # type: ignore[operator]
                    del messages[message_id]
                    gone += 1
        assert self.store.expire(self.now) == gone

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        for peer in PEERS:
            settings_ = self.store.settings(peer)
            assert settings_.state == self.model.states.get(peer, "accepted")
            assert settings_.known == (peer in self.model.states or peer in self.model.timers)
            assert settings_.timer_s == self.model.timers.get(peer, 0)
            stored = {m.message_id for m in self.store.messages(peer, limit=10_000)}
            assert stored == set(self.model.messages.get(peer, {}))
            assert self.store.is_blocked(peer) == (peer in self.model.blocked)
        requests = {c.conversation for c in self.store.conversations("request")}
        assert requests == {
            p for p, s in self.model.states.items() if s == "request" and self.model.messages.get(p)
        }

    @precondition(lambda self: self.model.messages)
    @invariant()
    def next_expiry_is_the_earliest_running_timer(self) -> None:
        running = [
            m.expire_at
            for messages in self.model.messages.values()
            for m in messages.values()
            if m.expire_at is not None
        ]
        assert self.store.next_expiry() == (min(running) if running else None)


ConversationRules.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
test_conversation_rules = ConversationRules.TestCase
