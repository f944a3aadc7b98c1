"""``python -m veil.interop.signal_peer``: Veil as a JSON-lines Signal peer.

Speaks exactly the protocol of the libsignal harness (../shared/interop/libsignal/README.md):
one JSON request per line on stdin, one response per line on stdout, handled strictly in order.
On start it prints ``{"id":null,"ok":true,"ready":true,...}``. Responses are
``{"id":..,"ok":true, ...result}`` or ``{"id":..,"ok":false,"error":..,"error_name":..}``.
Byte strings are lowercase hex. The process exits when stdin closes or on ``{"op":"quit"}``.

Differences from the libsignal harness, all additive: ``session_info.record`` is Veil's own
record format, and ``export_secrets`` gives the Kyber key as its 64-byte ML-KEM seed.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable
from typing import Any, TextIO

import veil
from veil.core.crypto.x25519 import PublicKey
from veil.core.errors import VeilError
from veil.core.signal.fingerprint import CURRENT_VERSION, DEFAULT_ITERATIONS, fingerprint
from veil.interop.signal_user import Address, User

PROTOCOL_VERSION = 1
IMPLEMENTATION = f"veil {veil.__version__}"
_TYPE_NAMES = {2: "whisper", 3: "prekey"}
_TYPE_BY_NAME = {"whisper": 2, "signal": 2, "prekey": 3}
_UUID_HEX_LEN = 32


class PeerError(Exception):
    """A malformed request (missing or mistyped field)."""


def identifier_bytes(s: str) -> bytes:
    """A UUID string -> its 16 bytes; ``hex:...`` -> those bytes; else UTF-8 (as the harness)."""
    compact = s.replace("-", "")
    if len(s) == 36 and len(compact) == _UUID_HEX_LEN and s.count("-") == 4:
        try:
            return bytes.fromhex(compact)
        except ValueError:
            pass
    if s.startswith("hex:"):
        return bytes.fromhex(s[4:])
    return s.encode()


class Peer:
    """The request handlers; one instance holds every user of this process."""

    def __init__(self) -> None:
        self.users: dict[Address, User] = {}

    def _user(self, req: dict[str, Any]) -> User:
        addr = Address(str(req.get("user")), int(req.get("device_id") or 1))
        user = self.users.get(addr)
        if user is None:
            raise PeerError(f"unknown user {addr} (create_user first)")
        return user

    @staticmethod
    def _peer(req: dict[str, Any]) -> Address:
        p = req.get("peer")
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise PeerError('missing "peer": {"name": ..., "device_id": ...}')
        return Address(p["name"], int(p.get("device_id") or 1))

    @staticmethod
    def _plaintext(req: dict[str, Any]) -> bytes:
        if isinstance(req.get("plaintext_hex"), str):
            return bytes.fromhex(req["plaintext_hex"])
        if isinstance(req.get("plaintext"), str):
            return str(req["plaintext"]).encode()
        raise PeerError('missing "plaintext" (UTF-8 string) or "plaintext_hex"')

    def op_hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "libsignal_version": None,
            "implementation": IMPLEMENTATION,
            "protocol": PROTOCOL_VERSION,
            "api": {"python": sys.version.split()[0]},
        }

    def op_create_user(self, req: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(req.get("user"), str):
            raise PeerError('missing "user" (name)')
        addr = Address(req["user"], int(req.get("device_id") or 1))
        if addr in self.users and not req.get("replace"):
            raise PeerError(f'user {addr} exists (pass "replace": true)')
        user = User(req)
        self.users[addr] = user
        return {"bundle": user.bundle_json()}

    def op_get_bundle(self, req: dict[str, Any]) -> dict[str, Any]:
        user = self._user(req)
        if req.get("new_prekey"):
            user.new_one_time_prekey()
        return {"bundle": user.bundle_json(no_prekey=bool(req.get("no_prekey")))}

    def op_export_secrets(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"secrets": self._user(req).secrets_json()}

    def op_process_bundle(self, req: dict[str, Any]) -> dict[str, Any]:
        user = self._user(req)
        bundle = req.get("bundle")
        if not isinstance(bundle, dict):
            raise PeerError('missing "bundle"')
        if isinstance(req.get("peer"), dict):
            peer = self._peer(req)
        elif isinstance(bundle.get("name"), str):
            peer = Address(bundle["name"], int(bundle.get("device_id") or 1))
        else:
            raise PeerError('bundle needs "name" (or pass "peer")')
        user.process_bundle(peer, bundle)
        return {}

    def op_encrypt(self, req: dict[str, Any]) -> dict[str, Any]:
        msg = self._user(req).encrypt(self._peer(req), self._plaintext(req))
        return {
            "type": msg.type,
            "type_name": _TYPE_NAMES[msg.type],
            "ciphertext": msg.serialized.hex(),
        }

    def op_decrypt(self, req: dict[str, Any]) -> dict[str, Any]:
        user = self._user(req)
        if not isinstance(req.get("ciphertext"), str):
            raise PeerError('missing "ciphertext" (hex)')
        raw_type = req.get("type")
        msg_type = _TYPE_BY_NAME.get(raw_type.lower()) if isinstance(raw_type, str) else raw_type
        if msg_type not in (2, 3):
            raise PeerError(f'bad message type {json.dumps(raw_type)} (2/"whisper" or 3/"prekey")')
        pt = user.decrypt(self._peer(req), int(msg_type), bytes.fromhex(req["ciphertext"]))
        try:
            text: str | None = pt.decode()
        except UnicodeDecodeError:
            text = None
        return {"plaintext_hex": pt.hex(), "plaintext": text}

    def op_session_info(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._user(req).session_info(self._peer(req))

    def op_identity(self, req: dict[str, Any]) -> dict[str, Any]:
        user = self._user(req)
        out: dict[str, Any] = {"identity_key": user.local.identity.public_key.serialize().hex()}
        if req.get("peer") is not None:
            known = user.known.get(self._peer(req))
            out["peer_identity_key"] = known.serialize().hex() if known else None
        return out

    def op_safety_number(self, req: dict[str, Any]) -> dict[str, Any]:
        user = self._user(req)
        peer = self._peer(req)
        if req.get("peer_identity_key"):
            remote = PublicKey.deserialize(bytes.fromhex(req["peer_identity_key"]))
        else:
            known = user.known.get(peer)
            if known is None:
                raise PeerError(
                    'peer identity unknown: pass "peer_identity_key" or set up a session first'
                )
            remote = known
        fp = fingerprint(
            int(req.get("version", CURRENT_VERSION)),
            int(req.get("iterations", DEFAULT_ITERATIONS)),
            identifier_bytes(str(req.get("local_id") or user.address.name)),
            user.local.identity.public_key,
            identifier_bytes(str(req.get("remote_id") or peer.name)),
            remote,
        )
        return {"displayable": fp.displayable, "scannable": fp.scannable.hex()}

    def op_stats(self, req: dict[str, Any]) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "cpu_user_us": int(usage.ru_utime * 1e6),
            "cpu_system_us": int(usage.ru_stime * 1e6),
            "rss": usage.ru_maxrss * 1024,
        }

    def op_list_users(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"users": [str(a) for a in self.users]}

    def op_quit(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"quit": True}

    def handle(self, line: str) -> dict[str, Any]:
        """One request line -> one response object. Never raises."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request is not a JSON object")
        except ValueError as exc:
            return {"id": None, "ok": False, "error": f"bad JSON: {exc}"}
        rid = req.get("id")
        op = req.get("op")
        fn: Callable[[dict[str, Any]], dict[str, Any]] | None = (
            getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        )
        if fn is None:
            return {"id": rid, "ok": False, "error": f"unknown op {json.dumps(op)}"}
        try:
            return {"id": rid, "ok": True, **fn(req)}
        except (VeilError, PeerError, ValueError, KeyError, TypeError) as exc:
            return {"id": rid, "ok": False, "error": str(exc), "error_name": type(exc).__name__}


def serve(stdin: TextIO, stdout: TextIO) -> None:
    """Run the request loop until stdin closes or a ``quit`` request."""
    peer = Peer()
    ready: dict[str, Any] = {"id": None, "ok": True, "ready": True, "libsignal_version": None}
    ready |= {"implementation": IMPLEMENTATION, "protocol": PROTOCOL_VERSION}
    stdout.write(json.dumps(ready) + "\n")
    stdout.flush()
    for line in stdin:
        if not line.strip():
            continue
        response = peer.handle(line)
        stdout.write(json.dumps(response) + "\n")
        stdout.flush()
        if response.get("ok") and response.get("quit"):
            break


def main() -> None:
    """Entry point: serve on the process's stdin/stdout."""
    serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
