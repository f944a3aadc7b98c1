"""End to end: a real ``veil server`` process on loopback, real clients (SDK and CLI).

The server's database and logs are searched for every text sent: only ciphertext may be
there. The server here is the embedded default (SQLite in a temporary data folder).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from veil.client import Client, ClientError, ServerError
from veil.client.convert import incoming
from veil.client.socket import DeviceSocket
from veil.engine import (
    DecryptFailure,
    DeviceAdded,
    MessageReceived,
    ReceiptReceived,
    SessionReset,
    SyncedSent,
    TypingChanged,
)
from veil.wire.messages import Deliver

from .conftest import People, VeilServer, linked, veil_cli


def _texts(events: list[object]) -> list[str | None]:
    return [e.text for e in events if isinstance(e, MessageReceived)]


async def test_a_message_and_its_receipt_and_a_reply(people: People) -> None:
    sent = await people.alice.send("bob", "hello bob")
    assert not sent.duplicate
    got = await people.bob.receive(timeout=0.5)
    [message] = [e for e in got if isinstance(e, MessageReceived)]
    assert message.text == "hello bob"
    assert message.message_id == sent.message_id
    assert people.bob.username_of(message.sender_account_id) in (None, "alice")
    # The delivery receipt reaches alice and marks her copy delivered.
    receipts = [
        e for e in await people.alice.receive(timeout=1.0) if isinstance(e, ReceiptReceived)
    ]
    assert receipts and receipts[0].kind == "delivered"
    [mine] = people.alice.messages(people.bob.account.account_id)
    assert mine.text == "hello bob" and mine.status == "delivered"
    await people.bob.send("alice", "hi alice")
    assert _texts(await people.alice.receive(timeout=0.5)) == ["hi alice"]


async def test_an_offline_device_catches_up_in_order(people: People) -> None:
    for i in range(12):
        await people.alice.send("bob", f"m{i}")
    assert _texts(await people.bob.receive()) == [f"m{i}" for i in range(12)]
    assert _texts(await people.bob.receive()) == []  # acked: not again


async def test_the_server_stores_and_logs_no_plaintext(people: People) -> None:
    secrets = ["the eagle lands at dawn", "pineapple-orchid-7391"]
    for text in secrets:
        await people.alice.send("bob", text)
    stored = people.server.database_bytes()
    assert all(text.encode() not in stored for text in secrets)
    envelopes = people.server.envelope_contents()
    assert len(envelopes) == 2 and all(len(c) > 100 for c in envelopes)
    assert _texts(await people.bob.receive()) == secrets
    logs = people.server.log_text()
    assert all(text not in logs for text in secrets)


async def test_a_crash_between_decrypt_and_ack_loses_and_duplicates_nothing(
    people: People,
) -> None:
    await people.alice.send("bob", "only once")
    account = people.bob.account
    # Take the envelope and process it, but "crash" before acking.
    socket = await DeviceSocket.connect(account.server_url, people.bob.credentials)
    try:
        async for frame in socket.frames():
            if isinstance(frame, Deliver):
                for envelope in frame.envelopes:
                    people.bob.engine.handle(incoming(envelope))
                break
    finally:
        await socket.close()
    # The server delivers it again; the engine recognises it; nothing is shown twice.
    again = await people.bob.receive()
    assert _texts(again) == []
    assert [m.text for m in people.bob.messages(people.alice.account.account_id)] == ["only once"]
    assert _texts(await people.bob.receive()) == []


async def test_unknown_user_and_oversized_message_are_clear_errors(people: People) -> None:
    with pytest.raises(ServerError) as unknown:
        await people.alice.send("nobody-here", "hi")
    assert unknown.value.status == 404
    with pytest.raises(ClientError):
        await people.alice.send("bob", "x" * 300_000)
    assert _texts(await people.bob.receive()) == []


async def test_corrupt_ciphertext_is_a_counted_failure_and_later_messages_still_work(
    people: People,
) -> None:
    await people.alice.send("bob", "first")
    assert _texts(await people.bob.receive()) == ["first"]
    await people.alice.receive(timeout=0.5)  # bob's receipt: alice's session is confirmed
    await people.alice.send("bob", "mangled")  # so this is a plain (type 2) message
    assert people.server.corrupt_queued_envelopes(people.bob.account.account_id) == 1
    failures = [e for e in await people.bob.receive() if isinstance(e, DecryptFailure)]
    assert [f.reason for f in failures] == ["bad_mac"]
    assert sum(people.bob.engine.failures.values()) == 1
    await people.alice.send("bob", "after")
    assert _texts(await people.bob.receive()) == ["after"]


async def test_a_changed_identity_key_is_refused_in_strict_mode_and_announced_in_tofu(
    veil_server: VeilServer, tmp_path: Path
) -> None:
    alice = await Client.register(tmp_path / "alice", veil_server.url, "alice", trust="strict")
    bob = await Client.register(tmp_path / "bob", veil_server.url, "bob")
    carol = await Client.register(tmp_path / "carol", veil_server.url, "carol")
    try:
        await alice.send("bob", "before")
        await carol.send("bob", "before")
        # A malicious server swaps bob's identity key (a man in the middle).
        veil_server.swap_identity(bob.account.account_id)
        alice.engine.forget_devices(bob.account.account_id, [1])
        carol.engine.forget_devices(bob.account.account_id, [1])
        with pytest.raises(ClientError):
            await alice.send("bob", "after")
        known = alice.engine.identity(bob.account.account_id)
        assert known is not None and known.trust == "changed"  # kept for verification
        await carol.send("bob", "after")  # tofu: accepted, and said
        record = carol.engine.identity(bob.account.account_id)
        assert record is not None and record.changed_ms is not None
        # bob still reads carol (the swapped key is the server's lie, not bob's: bob's
        # device cannot decrypt what was encrypted to the fake key).
        events = await bob.receive()
        assert _texts(events)[:2] == ["before", "before"]
    finally:
        for c in (alice, bob, carol):
            await c.close()


def test_the_cli_contract(veil_server: VeilServer, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    assert (
        "registered alice"
        in veil_cli(alice, "register", "alice", "--server", veil_server.url).stdout
    )
    veil_cli(bob, "register", "bob", "--server", veil_server.url)
    sent = json.loads(veil_cli(alice, "send", "bob", "hello from the cli", "--json").stdout)
    assert sent["type"] == "sent" and len(sent["id"]) == 32
    lines = veil_cli(bob, "receive", "--json").stdout.splitlines()
    [event] = [json.loads(line) for line in lines]
    assert event["type"] == "message"
    assert event["from"] == "alice" and event["text"] == "hello from the cli"
    assert event["id"] == sent["id"] and event["device"] == 1 and event["timestamp"] > 0
    inbox = [json.loads(x) for x in veil_cli(bob, "inbox", "--json").stdout.splitlines()]
    assert inbox[0]["with"] == "alice" and inbox[0]["messages"] == 1
    failed = veil_cli(alice, "send", "nobody-here", "hi", check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("veil: ")
    assert len(failed.stderr.strip().splitlines()) == 1
    safety_a = veil_cli(alice, "safety-number", "bob", "--json").stdout
    safety_b = veil_cli(bob, "safety-number", "alice", "--json").stdout
    assert json.loads(safety_a)["digits"] == json.loads(safety_b)["digits"]
    drawn = veil_cli(alice, "safety-number", "bob").stdout
    assert json.loads(safety_a)["digits"][:5] in drawn and "\u2588" in drawn  # digits and a QR
    assert "verified" in veil_cli(alice, "verify", "bob").stdout
    nobody = tmp_path / "nobody"
    missing = veil_cli(nobody, "inbox", check=False)
    assert missing.returncode == 1 and "run register or link first" in missing.stderr
    assert not nobody.exists()  # nothing left behind
    devices = [json.loads(x) for x in veil_cli(alice, "devices", "--json").stdout.splitlines()]
    assert devices == [devices[0]] and devices[0]["this"] is True


def test_every_chat_command_has_help() -> None:
    for command in (
        "register",
        "send",
        "receive",
        "listen",
        "inbox",
        "devices",
        "safety-number",
        "verify",
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "veil", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0 and "usage: veil" in proc.stdout, command


def _seen(events: list[object]) -> set[tuple[str, str | None]]:
    out: set[tuple[str, str | None]] = set()
    for e in events:
        if isinstance(e, MessageReceived):
            out.add(("in", e.text))
        elif isinstance(e, SyncedSent):
            out.add(("out", e.text))
    return out


async def test_two_users_two_devices_each_see_every_message(
    veil_server: VeilServer, tmp_path: Path
) -> None:
    alice = await Client.register(tmp_path / "alice1", veil_server.url, "alice")
    bob = await Client.register(tmp_path / "bob1", veil_server.url, "bob")
    alice2 = await linked(alice, tmp_path / "alice2", veil_server.url)
    bob2 = await linked(bob, tmp_path / "bob2", veil_server.url)
    devices = (alice, alice2, bob, bob2)
    try:
        assert alice2.account.account_id == alice.account.account_id
        assert alice2.account.device_id == 2 and bob2.account.device_id == 2
        assert {d.device_id for d in await alice.devices()} == {1, 2}
        await alice.send("bob", "from alice's laptop")
        await bob2.send("alice", "from bob's phone")
        await alice2.send("bob", "from alice's phone")
        seen = [_seen(await d.receive(timeout=0.5)) for d in devices]
        assert seen[0] == {("in", "from bob's phone"), ("out", "from alice's phone")}
        assert seen[1] == {("in", "from bob's phone"), ("out", "from alice's laptop")}
        assert seen[2] == {
            ("in", "from alice's laptop"),
            ("in", "from alice's phone"),
            ("out", "from bob's phone"),
        }
        assert seen[3] == {("in", "from alice's laptop"), ("in", "from alice's phone")}
        # Every device's store holds the whole conversation.
        for d in devices:
            peer = (
                bob.account.account_id
                if d.account.username == "alice"
                else alice.account.account_id
            )
            texts = {m.text for m in d.messages(peer)}
            assert texts == {"from alice's laptop", "from bob's phone", "from alice's phone"}, d
    finally:
        for d in devices:
            await d.close()


async def test_a_lost_session_is_reset_automatically_and_the_message_arrives(
    people: People,
) -> None:
    await people.alice.send("bob", "hello")
    assert _texts(await people.bob.receive()) == ["hello"]
    await people.alice.receive(timeout=0.5)  # the receipt: alice's session is confirmed
    # Bob's device loses its session with alice (say, restored from an old backup).
    people.bob.engine.forget_devices(people.alice.account.account_id, [1])
    await people.alice.send("bob", "are you there?")
    first = await people.bob.receive(timeout=0.5)
    assert [f.reason for f in first if isinstance(f, DecryptFailure)] == ["no_session"]
    assert [(r.device_id, r.by_us) for r in first if isinstance(r, SessionReset)] == [(1, True)]
    # Alice gets the reset (a PreKey message from a fresh bundle) and sends again what no
    # device of bob's confirmed; bob reads it on the new session.
    assert any(isinstance(e, SessionReset) and not e.by_us for e in await people.alice.receive(0.5))
    assert _texts(await people.bob.receive(timeout=0.5)) == ["are you there?"]
    await people.alice.send("bob", "and this")
    assert _texts(await people.bob.receive(timeout=0.5)) == ["and this"]
    assert people.bob.engine.failures["no_session"] == 1


def test_killing_a_listening_client_loses_and_duplicates_nothing(
    veil_server: VeilServer, tmp_path: Path
) -> None:
    """``veil listen`` is killed (SIGKILL) while messages stream in: everything ends up in
    the store exactly once, and nothing is shown twice."""

    async def setup() -> None:
        alice = await Client.register(tmp_path / "alice", veil_server.url, "alice")
        bob = await Client.register(tmp_path / "bob", veil_server.url, "bob")
        await bob.close()
        async with alice:
            for i in range(40):
                await alice.send("bob", f"n{i:02d}")

    asyncio.run(setup())
    listen = subprocess.Popen(
        [sys.executable, "-m", "veil", "--profile", str(tmp_path / "bob"), "listen", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listen.stdout is not None
    shown = []
    for line in listen.stdout:
        event = json.loads(line)
        if event["type"] == "message":
            shown.append(event["id"])
        if len(shown) >= 5:
            break
    listen.kill()
    listen.wait()
    after = veil_cli(tmp_path / "bob", "receive", "--json", "--timeout", "1").stdout.splitlines()
    shown += [e["id"] for e in map(json.loads, after) if e["type"] == "message"]
    assert len(shown) == len(set(shown)), "a message was shown twice"
    inbox = veil_cli(tmp_path / "bob", "inbox", "alice", "--json", "--limit", "100").stdout
    texts = [json.loads(line)["text"] for line in inbox.splitlines()]
    assert sorted(texts) == [f"n{i:02d}" for i in range(40)]


async def test_a_new_device_is_announced_to_the_peer_and_to_the_owners_other_devices(
    people: People, tmp_path: Path
) -> None:
    alice, bob = people.alice, people.bob
    await alice.send("bob", "before")
    assert _texts(await bob.receive()) == ["before"]
    bob2 = await linked(bob, tmp_path / "bob2", people.server.url)
    try:
        await alice.send("bob", "after")  # refused once: bob has a device alice lacks
        added = [e for e in await alice.receive(timeout=0.5) if isinstance(e, DeviceAdded)]
        assert added == [DeviceAdded(bob.account.account_id, 2)]
        assert _texts(await bob2.receive()) == ["after"]
        await bob.send("alice", "hi from bob's first device")
        mine = [e for e in await bob.receive(timeout=0.5) if isinstance(e, DeviceAdded)]
        assert mine == [DeviceAdded(bob.account.account_id, 2)]
    finally:
        await bob2.close()


async def test_typing_indicators_reach_the_peer_and_are_not_stored(people: People) -> None:
    await people.alice.typing("bob")
    await people.alice.typing("bob", started=False)
    got = [e for e in await people.bob.receive() if isinstance(e, TypingChanged)]
    assert [e.started for e in got] == [True, False]
    assert people.bob.messages(people.alice.account.account_id) == []


async def test_read_receipts_mark_the_senders_copies_read(people: People) -> None:
    for text in ("one", "two"):
        await people.alice.send("bob", text)
    await people.bob.receive()
    assert await people.bob.mark_read(people.alice.account.account_id) == 2
    await people.alice.receive(timeout=0.5)
    statuses = [m.status for m in people.alice.messages(people.bob.account.account_id)]
    assert statuses == ["read", "read"]
    assert await people.bob.mark_read(people.alice.account.account_id) == 0  # already read


async def test_messages_sent_while_the_server_is_down_go_out_later_in_order(
    people: People,
) -> None:
    await people.alice.send("bob", "first")  # bob is a known contact from here on
    people.server.stop()
    queued = [await people.alice.send("bob", f"offline {i}") for i in range(3)]
    assert all(r.queued for r in queued)
    bob_id = people.bob.account.account_id
    assert [m.status for m in people.alice.messages(bob_id)] == ["sent"] + ["sending"] * 3
    people.server.start()
    after = await people.alice.send("bob", "back online")  # the outbox goes first
    assert not after.queued
    assert _texts(await people.bob.receive()) == [
        "first",
        "offline 0",
        "offline 1",
        "offline 2",
        "back online",
    ]
    # Stored by the server, no receipt read yet.
    assert [m.status for m in people.alice.messages(bob_id)] == ["sent"] * 5
    assert await people.alice.flush_outbox() == 0


def test_the_cli_links_a_second_device(veil_server: VeilServer, tmp_path: Path) -> None:
    """``veil link`` prints a veil-link code (and a QR); ``veil devices approve`` on the first
    device links it; the new device then receives what is sent to the account."""
    alice, phone, bob = tmp_path / "alice", tmp_path / "phone", tmp_path / "bob"
    veil_cli(alice, "register", "alice", "--server", veil_server.url)
    veil_cli(bob, "register", "bob", "--server", veil_server.url)
    link = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veil",
            "--profile",
            str(phone),
            "link",
            "--server",
            veil_server.url,
            "--device-name",
            "phone",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert link.stdout is not None
    code = ""
    for line in link.stdout:
        if "veil devices approve" in line:
            code = line.split("approve", 1)[1].strip()
            break
    assert code.startswith("veil-link:")
    assert "approved" in veil_cli(alice, "devices", "approve", code).stdout
    rest = link.stdout.read()
    assert link.wait(60) == 0 and "linked as device 2 of alice" in rest
    assert any(block in rest for block in "\u2580\u2584\u2588")  # the QR after the code
    veil_cli(bob, "send", "alice", "to both of alice's devices")
    for profile in (alice, phone):
        events = [json.loads(x) for x in veil_cli(profile, "receive", "--json").stdout.splitlines()]
        texts = [e["text"] for e in events if e["type"] == "message"]
        assert texts == ["to both of alice's devices"], profile


async def test_a_device_whose_keys_never_arrived_publishes_them_when_it_connects(
    people: People,
) -> None:
    # As if bob's first key upload had been lost: the server holds no prekeys for him.
    people.server.drop_keys(people.bob.account.account_id)
    with pytest.raises(ServerError) as refused:
        await people.alice.send("bob", "hello?")
    assert refused.value.status == 404
    await people.bob.receive()  # connecting: "keys low (0, 0)" -> a full upload
    await people.bob.settle()
    await people.alice.send("bob", "hello again")
    assert _texts(await people.bob.receive()) == ["hello again"]
