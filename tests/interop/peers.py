"""Drive a JSON-lines Signal peer (Veil's or libsignal's) from a test.

Both implementations speak the protocol of ``shared/interop/libsignal/README.md``: one JSON
request per line on stdin, one response per line on stdout, strictly in order, and a first
``{"ready": true, ...}`` line. :class:`JsonPeer` runs either as a subprocess with the same
interface; :class:`Party` is one user inside a peer, with the calls the scenarios need.

Every read has a deadline (a reader thread feeds a queue): a hung or crashed peer fails the
test with the peer's last stderr lines instead of hanging CI.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = float(os.environ.get("VEIL_INTEROP_TIMEOUT", "30"))
"""Seconds to wait for one response (and for the ready line)."""

_EOF = object()


class PeerCallError(Exception):
    """The peer answered ``ok: false``; ``response`` is its whole answer."""

    def __init__(self, peer: str, op: str, response: dict[str, Any]) -> None:
        self.peer = peer
        self.op = op
        self.response = response
        self.error = str(response.get("error"))
        self.error_name = response.get("error_name")
        super().__init__(f"{peer}: {op} failed: {self.error_name}: {self.error}")


class PeerProtocolError(Exception):
    """The peer died, hung, or broke the JSON-lines protocol."""


class JsonPeer:
    """One peer subprocess speaking the JSON-lines protocol.

    ``kind`` is ``"veil"`` or ``"libsignal"`` (error names differ between the two).
    """

    def __init__(
        self,
        name: str,
        kind: str,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.name = name
        self.kind = kind
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lines: queue.Queue[object] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=40)
        self._proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        threading.Thread(target=self._pump_stdout, name=f"{name}-stdout", daemon=True).start()
        threading.Thread(target=self._pump_stderr, name=f"{name}-stderr", daemon=True).start()
        try:
            self.ready = self._read("the ready line")
            if self.ready.get("ready") is not True or self.ready.get("ok") is not True:
                raise PeerProtocolError(f"{name}: unexpected first line {self.ready!r}")
        except BaseException:
            self.kill()
            raise

    @classmethod
    def veil(cls, name: str = "veil", *, timeout: float = DEFAULT_TIMEOUT) -> JsonPeer:
        """Veil's own peer: ``python -m veil.interop.signal_peer``."""
        argv = [sys.executable, "-m", "veil.interop.signal_peer"]
        return cls(name, "veil", argv, timeout=timeout)

    @classmethod
    def libsignal(
        cls, folder: Path, *, package: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> JsonPeer:
        """The libsignal harness in ``folder``; ``package`` selects the build (LIBSIGNAL_PKG)."""
        env = {k: v for k, v in os.environ.items() if k != "LIBSIGNAL_PKG"}
        if package:
            env["LIBSIGNAL_PKG"] = package
        name = f"libsignal[{package}]" if package else "libsignal"
        argv = ["node", "harness.mjs"]
        return cls(name, "libsignal", argv, cwd=folder, env=env, timeout=timeout)

    # --- I/O ------------------------------------------------------------------------------
    def _pump_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip():
                self._lines.put(line)
        self._lines.put(_EOF)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _diagnostics(self) -> str:
        tail = "\n".join(self._stderr) or "(empty)"
        return f"exit code {self._proc.poll()}; stderr tail:\n{tail}"

    def _read(self, what: str) -> dict[str, Any]:
        try:
            item = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.kill()
            raise PeerProtocolError(
                f"{self.name}: no answer within {self.timeout:g} s waiting for {what}; "
                f"{self._diagnostics()}"
            ) from None
        if item is _EOF:
            self.kill()
            raise PeerProtocolError(
                f"{self.name}: closed stdout waiting for {what}; {self._diagnostics()}"
            )
        assert isinstance(item, str)
        try:
            obj = json.loads(item)
        except ValueError as exc:
            raise PeerProtocolError(f"{self.name}: not JSON: {item[:200]!r}") from exc
        if not isinstance(obj, dict):
            raise PeerProtocolError(f"{self.name}: not a JSON object: {item[:200]!r}")
        return obj

    def _send(self, request: dict[str, Any]) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise PeerProtocolError(f"{self.name}: cannot write; {self._diagnostics()}") from exc

    # --- calls ----------------------------------------------------------------------------
    def try_call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return the raw response (``ok`` true or false)."""
        return self.try_call_many([{"op": op, **fields}])[0]

    def try_call_many(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Pipeline several requests (all written, then all read); raw responses in order."""
        ids = []
        for req in requests:
            rid = next(self._ids)
            ids.append(rid)
            self._send({**req, "id": rid})
        responses = []
        for rid, req in zip(ids, requests, strict=True):
            res = self._read(f"the answer to {req.get('op')!r} (id {rid})")
            if res.get("id") != rid:
                raise PeerProtocolError(f"{self.name}: answer id {res.get('id')!r} != {rid}")
            responses.append(res)
        return responses

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return the response, or raise :class:`PeerCallError`."""
        return self._checked(op, self.try_call(op, **fields))

    def call_many(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Pipelined :meth:`call`; raises on the first ``ok: false`` (all are read first)."""
        responses = self.try_call_many(requests)
        for req, res in zip(requests, responses, strict=True):
            self._checked(str(req.get("op")), res)
        return responses

    def _checked(self, op: str, res: dict[str, Any]) -> dict[str, Any]:
        if res.get("ok") is not True:
            raise PeerCallError(self.name, op, res)
        return res

    # --- lifetime -------------------------------------------------------------------------
    def kill(self) -> None:
        """Stop the process now."""
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)

    def close(self) -> int | None:
        """Send ``quit``, wait briefly for the exit, kill if needed; the exit code."""
        if self._proc.poll() is None:
            with contextlib.suppress(PeerProtocolError, OSError):
                self._send({"op": "quit", "id": next(self._ids)})
            with contextlib.suppress(OSError, ValueError):
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        return self._proc.returncode

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._proc.poll() is None

    def __enter__(self) -> JsonPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JsonPeer({self.name}, pid={self._proc.pid})"


# --- one user inside a peer -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A ciphertext in transit: its Signal type (2 whisper, 3 PreKey) and bytes."""

    type: int
    ciphertext: bytes

    def with_ciphertext(self, data: bytes) -> Envelope:
        """The same type with other bytes (for tampering)."""
        return Envelope(self.type, data)


@dataclass(frozen=True, slots=True)
class Party:
    """One user (one device) held by a peer process."""

    peer: JsonPeer
    name: str
    device_id: int = 1

    @property
    def address(self) -> dict[str, Any]:
        """This party as the ``peer`` field of a request."""
        return {"name": self.name, "device_id": self.device_id}

    def _request(self, op: str, **fields: Any) -> dict[str, Any]:
        return {"op": op, "user": self.name, "device_id": self.device_id, **fields}

    def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        return self.peer.call_many([self._request(op, **fields)])[0]

    def create(self, **fields: Any) -> dict[str, Any]:
        """``create_user``; returns the bundle."""
        bundle: dict[str, Any] = self._call("create_user", **fields)["bundle"]
        return bundle

    def bundle(self, **fields: Any) -> dict[str, Any]:
        """``get_bundle`` (``no_prekey=True``, ``new_prekey=True``)."""
        bundle: dict[str, Any] = self._call("get_bundle", **fields)["bundle"]
        return bundle

    def process_bundle(self, other: Party, bundle: dict[str, Any]) -> None:
        """Start a session with ``other`` from its bundle."""
        self._call("process_bundle", peer=other.address, bundle=bundle)

    def _encrypt_req(self, to: Party, plaintext: bytes) -> dict[str, Any]:
        return self._request("encrypt", peer=to.address, plaintext_hex=plaintext.hex())

    def _decrypt_req(self, sender: Party, env: Envelope) -> dict[str, Any]:
        return self._request(
            "decrypt", peer=sender.address, type=env.type, ciphertext=env.ciphertext.hex()
        )

    def encrypt(self, to: Party, plaintext: bytes) -> Envelope:
        """Encrypt one message to ``to``."""
        return self.encrypt_many(to, [plaintext])[0]

    def encrypt_many(self, to: Party, plaintexts: Sequence[bytes]) -> list[Envelope]:
        """Encrypt several messages to ``to``, in order (pipelined)."""
        res = self.peer.call_many([self._encrypt_req(to, p) for p in plaintexts])
        return [Envelope(int(r["type"]), bytes.fromhex(r["ciphertext"])) for r in res]

    def decrypt(self, sender: Party, env: Envelope) -> bytes:
        """Decrypt one message from ``sender``; raises :class:`PeerCallError` on failure."""
        return self.decrypt_many(sender, [env])[0]

    def decrypt_many(self, sender: Party, envs: Sequence[Envelope]) -> list[bytes]:
        """Decrypt several messages from ``sender``, in the given order (pipelined)."""
        res = self.peer.call_many([self._decrypt_req(sender, e) for e in envs])
        return [bytes.fromhex(r["plaintext_hex"]) for r in res]

    def try_decrypt(self, sender: Party, env: Envelope) -> dict[str, Any]:
        """Decrypt, returning the raw response (for expected failures)."""
        return self.peer.try_call_many([self._decrypt_req(sender, env)])[0]

    def safety_number(self, other: Party, **fields: Any) -> dict[str, Any]:
        """``safety_number`` with ``other`` (identity key from the store unless given)."""
        return self._call("safety_number", peer=other.address, **fields)

    def identity(self, other: Party | None = None) -> dict[str, Any]:
        """``identity``: our key, and the one we hold for ``other``."""
        return self._call("identity", **({"peer": other.address} if other else {}))

    def session_info(self, other: Party) -> dict[str, Any]:
        """``session_info`` for our session with ``other``."""
        return self._call("session_info", peer=other.address)


def fresh_name(role: str, style: str = "ascii") -> str:
    """A user name no other test uses: ``alice-<hex>``, or a UUID string (``style="uuid"``)."""
    if style == "uuid":
        return str(uuid.uuid4())
    return f"{role}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class Pair:
    """Which peer starts the session (``initiator``) and which answers (``responder``)."""

    initiator: JsonPeer
    responder: JsonPeer

    @property
    def label(self) -> str:
        return f"{self.initiator.name} starts, {self.responder.name} responds"

    def parties(self, style: str = "ascii") -> tuple[Party, Party]:
        """Fresh ``(alice, bob)``: alice on the initiator's peer, bob on the responder's."""
        return (
            Party(self.initiator, fresh_name("alice", style)),
            Party(self.responder, fresh_name("bob", style)),
        )


# --- a minimal protobuf reader (independent of Veil's own codec) ------------------------------


@dataclass(frozen=True, slots=True)
class PbField:
    """One top-level protobuf field: number, wire type, value, and where its value lies."""

    number: int
    wire_type: int
    value: int | bytes
    start: int
    end: int


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def pb_fields(data: bytes, offset: int = 0) -> list[PbField]:
    """The top-level fields of a protobuf message (varint and length-delimited only).

    ``start``/``end`` are positions in ``data`` plus ``offset`` (so fields of a message that
    follows a version byte can be located in the whole buffer).
    """
    fields: list[PbField] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            start = pos
            value, pos = _varint(data, pos)
            fields.append(PbField(number, 0, value, start + offset, pos + offset))
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("length-delimited field runs past the end")
            value_bytes = data[pos : pos + length]
            fields.append(PbField(number, 2, value_bytes, pos + offset, pos + length + offset))
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return fields


def pb_field(data: bytes, number: int, offset: int = 0) -> PbField | None:
    """The first top-level field ``number``, or None."""
    return next((f for f in pb_fields(data, offset) if f.number == number), None)
