"""End to end: attachments through a real ``veil server`` process (issue 4).

A file is encrypted by the sender, stored by the server as an opaque blob, and downloaded and
verified by the receiver before it is written, under a name of the receiver's own making.
The server's files are searched for a marker inside the plaintext: only ciphertext may be
there; a blob changed on the server is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from veil.client import (
    AttachmentInvalidError,
    AttachmentTooLargeError,
    Client,
    ClientError,
)
from veil.client import attachments as client_attachments
from veil.client.attachments import safe_file_name
from veil.engine import MessageReceived

from .conftest import People, VeilServer, veil_cli

MARKER = b"VEIL-ATTACHMENT-PLAINTEXT-MARKER-0123456789-abcdefghijklmnopqrst"
assert len(MARKER) == 64


def _file(folder: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = bytearray(os.urandom(size))
    middle = size // 2
    data[middle : middle + len(MARKER)] = MARKER
    path = folder / name
    path.write_bytes(bytes(data))
    return path, bytes(data)


def _server_files(server: VeilServer) -> list[Path]:
    return sorted(p for p in server.data_dir.rglob("*") if p.is_file())


async def _one_message(client: Client) -> MessageReceived:
    [message] = [e for e in await client.receive(timeout=0.5) if isinstance(e, MessageReceived)]
    return message


def _saved(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


async def test_a_file_arrives_byte_exact_and_the_server_sees_only_ciphertext(
    people: People, tmp_path: Path
) -> None:
    path, data = _file(tmp_path, "report.pdf", 3 << 20)
    sent = await people.alice.send_file("bob", path, caption="the quarterly report")
    message = await _one_message(people.bob)
    assert message.message_id == sent.message_id
    assert message.text == "the quarterly report"
    pointer = message.attachment
    assert pointer is not None
    assert (pointer.file_name, pointer.size, pointer.content_type) == (
        "report.pdf",
        len(data),
        "application/pdf",
    )
    assert "key=<hidden>" in repr(pointer)

    saved = await people.bob.download(message)
    assert saved.read_bytes() == data
    assert saved.parent == people.bob.store.attachments_dir
    assert saved.name == "report.pdf"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    [record] = people.bob.messages(message.conversation)
    assert record.attachment_path == "attachments/report.pdf"
    assert await people.bob.download(record) == saved  # already there: not fetched again
    assert _saved(saved.parent) == [saved]

    # The server holds the blob (ciphertext, a little longer) and nothing readable.
    blob = people.server.data_dir / "attachments" / pointer.blob_id
    assert blob.is_file() and len(blob.read_bytes()) > len(data)
    files = _server_files(people.server)
    assert blob in files
    for server_file in files:
        content = server_file.read_bytes()
        assert MARKER not in content, server_file
        assert b"quarterly report" not in content, server_file
    assert MARKER not in people.server.database_bytes()
    assert "quarterly" not in people.server.log_text()

    # The sender keeps its own copy with the pointer, and can fetch the blob back from it.
    [mine] = people.alice.messages(people.bob.account.account_id)
    assert mine.direction == "out" and mine.text == "the quarterly report"
    assert (await people.alice.download(mine)).read_bytes() == data


async def test_a_blob_changed_on_the_server_is_refused_and_nothing_is_written(
    people: People, tmp_path: Path
) -> None:
    path, _ = _file(tmp_path, "photo.jpg", 100_000)
    await people.alice.send_file("bob", path)
    message = await _one_message(people.bob)
    assert message.attachment is not None
    blob = people.server.data_dir / "attachments" / message.attachment.blob_id
    tampered = bytearray(blob.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    blob.write_bytes(bytes(tampered))

    with pytest.raises(AttachmentInvalidError, match="failed verification") as caught:
        await people.bob.download(message)
    assert "nothing was saved" in str(caught.value)
    assert isinstance(caught.value, ClientError)
    assert _saved(people.bob.store.attachments_dir) == []
    [record] = people.bob.messages(message.conversation)
    assert record.attachment_path is None


async def test_a_file_over_the_limit_is_refused_before_upload(
    people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads: list[int] = []
    real_upload = client_attachments.HttpApi.upload_attachment

    async def counting(self: client_attachments.HttpApi, data: bytes) -> object:
        uploads.append(len(data))
        return await real_upload(self, data)

    monkeypatch.setattr(client_attachments.HttpApi, "upload_attachment", counting)

    # The default limit (100 MiB, the server's): a sparse file just over it, never read.
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as f:
        f.truncate((100 << 20) + 1)
    with pytest.raises(AttachmentTooLargeError) as caught:
        await people.alice.send_file("bob", huge)
    assert str(100 << 20) in str(caught.value) and str((100 << 20) + 1) in str(caught.value)

    # A smaller limit for this client: one byte over it is refused, at it is sent.
    people.alice.max_file_bytes = 1000
    big, _ = _file(tmp_path, "big.txt", 1001)
    with pytest.raises(AttachmentTooLargeError, match=r"big\.txt is 1001 bytes") as small:
        await people.alice.send_file("bob", big)
    assert small.value.limit == 1000 and small.value.size == 1001
    assert uploads == []
    assert not (people.server.data_dir / "attachments").exists() or not any(
        (people.server.data_dir / "attachments").iterdir()
    )
    assert people.alice.messages(people.bob.account.account_id) == []

    fits, data = _file(tmp_path, "fits.txt", 1000)
    await people.alice.send_file("bob", fits)
    assert len(uploads) == 1
    message = await _one_message(people.bob)
    assert (await people.bob.download(message)).read_bytes() == data

    # A receiver's limit applies before any download, too.
    people.bob.max_file_bytes = 999
    await people.alice.send_file("bob", fits)
    with pytest.raises(AttachmentTooLargeError):
        await people.bob.download(await _one_message(people.bob))


async def test_a_missing_file_or_a_folder_is_a_clear_error(people: People, tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="cannot read"):
        await people.alice.send_file("bob", tmp_path / "nope.txt")
    with pytest.raises(ClientError, match="not a regular file"):
        await people.alice.send_file("bob", tmp_path)


HOSTILE = [
    "../../etc/passwd",
    "..",
    ".",
    "",
    "/absolute/name.txt",
    "a/b/../../c.txt",
    "..\\..\\windows\\system32\\evil.dll",
    "evil\x00name.txt",
    "\x00",
    ".bashrc",
    "line\nbreak\r.txt",
    "invoice\u202egpj.exe",
    "CON.txt",
    "x" * 240 + ".tar.gz",
]


async def test_hostile_file_names_are_saved_safely_inside_the_attachments_folder(
    people: People, tmp_path: Path
) -> None:
    path, data = _file(tmp_path, "payload.bin", 5000)
    contact = await people.alice.resolve("bob")
    pointer = await client_attachments.upload_file(
        people.alice._api(), path, people.alice.max_file_bytes, os.urandom
    )
    for name in HOSTILE:
        hostile = dataclasses.replace(pointer, file_name=name)
        await people.alice._send_message(contact, text=None, attachment=hostile)
    got = [e for e in await people.bob.receive(timeout=0.5) if isinstance(e, MessageReceived)]
    assert [m.attachment.file_name for m in got if m.attachment] == HOSTILE
    folder = people.bob.store.attachments_dir.resolve()
    saved = [await people.bob.download(m) for m in got]
    assert len(set(saved)) == len(HOSTILE)  # no file replaced another
    for name, file in zip(HOSTILE, saved, strict=True):
        assert file.resolve().parent == folder, name
        assert file.read_bytes() == data
        assert not file.name.startswith(".")
        assert not any(ch in file.name for ch in "/\\\x00\n\r\u202e"), file.name
        assert len(file.name.encode()) <= 130
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    names = [f.name for f in saved]
    assert names[0] == "passwd"
    assert names[1:4] == ["attachment", "attachment (1)", "attachment (2)"]
    assert names[8] == "attachment (3)"
    assert names[9] == "bashrc"
    assert names[-1].endswith(".gz")
    assert sorted(folder.iterdir()) == sorted(f.resolve() for f in saved)  # no temp files
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..", "attachment"),
        ("", "attachment"),
        ("dir\\file.txt", "file.txt"),
        ("a\x00b.txt", "ab.txt"),
        ("...hidden", "hidden"),
        ("trailing. . ", "trailing"),
        ("a<b>c:d.txt", "a_b_c_d.txt"),
        ("nul", "_nul"),
        ("COM1.log", "_COM1.log"),
        ("\u202eexe.txt", "exe.txt"),
        ("日本語.txt", "日本語.txt"),
    ],
)
def test_safe_file_name(hint: str, expected: str) -> None:
    assert safe_file_name(hint) == expected


def test_a_long_name_keeps_its_extension() -> None:
    name = safe_file_name("é" * 200 + ".jpeg")
    assert name.endswith(".jpeg") and len(name.encode()) <= 120
    assert name[:-5] == "é" * ((120 - 5) // 2)


def test_the_cli_sends_and_downloads_a_file(veil_server: VeilServer, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    veil_cli(alice, "register", "alice", "--server", veil_server.url)
    veil_cli(bob, "register", "bob", "--server", veil_server.url)
    path, data = _file(tmp_path, "notes.txt", 200_000)

    for wrong in (["bob"], ["bob", "hi", "--file", str(path)], ["bob", "hi", "--caption", "x"]):
        usage = veil_cli(alice, "send", *wrong, check=False)
        assert usage.returncode == 2 and "usage: veil send" in usage.stderr, wrong

    sent = json.loads(
        veil_cli(
            alice, "send", "bob", "--file", str(path), "--caption", "my notes", "--json"
        ).stdout
    )
    assert sent["type"] == "sent"
    lines = veil_cli(bob, "receive", "--json", "--download").stdout.splitlines()
    [event] = [json.loads(x) for x in lines if json.loads(x)["type"] == "message"]
    assert event["id"] == sent["id"] and event["text"] == "my notes"
    shown = event["attachment"]
    assert (shown["name"], shown["size"], shown["content_type"]) == (
        "notes.txt",
        len(data),
        "text/plain",
    )
    saved = Path(shown["path"])
    assert saved.read_bytes() == data
    assert saved.parent == bob / "attachments"

    inbox = [json.loads(x) for x in veil_cli(bob, "inbox", "alice", "--json").stdout.splitlines()]
    assert inbox[-1]["attachment"]["path"] == str(saved)
    assert "notes.txt" in veil_cli(bob, "inbox", "alice").stdout

    # Plain text output, without --download: the file is announced, not fetched.
    veil_cli(alice, "send", "bob", "--file", str(path))
    text = veil_cli(bob, "receive").stdout
    assert "[file 'notes.txt' (200000 bytes, text/plain)]" in text
    assert "saved to" not in text
    assert sorted(p.name for p in (bob / "attachments").iterdir()) == ["notes.txt"]
