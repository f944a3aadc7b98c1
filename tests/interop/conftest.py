"""Fixtures for the live interop tests: Veil's JSON-lines peer and the libsignal harness.

The harness (``shared/interop/libsignal``, installed with ``npm ci``) is found through
``$VEIL_LIBSIGNAL_PEER``, else ``~/.cache/veil/libsignal-peer`` (where ``scripts/test`` puts
it). It needs ``node_modules/@signalapp/libsignal-client`` and ``node`` on PATH. Without them
the interop tests skip, unless ``VEIL_REQUIRE_INTEROP=1`` (CI), which makes them fail.

Peer processes are started once per worker and reused (every test uses fresh user names);
one that died or hung is replaced by the next test that asks for it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .peers import JsonPeer, Pair

PINNED_VERSION = "0.90.0"
"""The default harness build: the newest libsignal that falls back to a peer without SPQR."""

LATEST_PACKAGE = "libsignal-latest"
"""The npm alias of the newest libsignal (SPQR mandatory), selected by ``LIBSIGNAL_PKG``."""


def _unavailable(reason: str) -> None:
    if os.environ.get("VEIL_REQUIRE_INTEROP") == "1":
        pytest.fail(f"{reason} -- and VEIL_REQUIRE_INTEROP=1", pytrace=False)
    pytest.skip(reason)


def find_libsignal_peer(package: str | None = None) -> Path:
    """The installed harness folder; skips (or fails when required) if it is not usable."""
    env = os.environ.get("VEIL_LIBSIGNAL_PEER")
    folder = Path(env).expanduser() if env else Path.home() / ".cache" / "veil" / "libsignal-peer"
    where = f"{folder} (from {'VEIL_LIBSIGNAL_PEER' if env else 'the default location'})"
    module = Path("@signalapp", "libsignal-client") if package is None else Path(package)
    if not (folder / "harness.mjs").is_file():
        _unavailable(
            f"libsignal interop peer not found: no harness.mjs in {where}; run scripts/test"
        )
    elif not (folder / "node_modules" / module).is_dir():
        _unavailable(f"libsignal interop peer in {where} lacks node_modules/{module}; run npm ci")
    elif shutil.which("node") is None:
        _unavailable("node is not on PATH; the libsignal interop peer needs Node 20+")
    return folder


class PeerPool:
    """Live peer processes by key, (re)started on demand; closed at the end of the session."""

    def __init__(self) -> None:
        self._peers: dict[str, JsonPeer] = {}

    def get(self, key: str, start: Callable[[], JsonPeer]) -> JsonPeer:
        peer = self._peers.get(key)
        if peer is None or not peer.alive:
            peer = self._peers[key] = start()
        return peer

    def close(self) -> None:
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()


@pytest.fixture(scope="session")
def peer_pool() -> Iterator[PeerPool]:
    """The per-worker pool of peer processes."""
    pool = PeerPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def libsignal_folder() -> Path:
    """The installed libsignal harness (skip / fail if missing)."""
    return find_libsignal_peer()


@pytest.fixture
def veil_peer(peer_pool: PeerPool) -> JsonPeer:
    """Veil's peer process (``python -m veil.interop.signal_peer``)."""
    return peer_pool.get("veil", JsonPeer.veil)


@pytest.fixture
def veil_peer_2(peer_pool: PeerPool) -> JsonPeer:
    """A second, separate Veil peer process (the Veil-to-Veil control)."""
    return peer_pool.get("veil-2", lambda: JsonPeer.veil("veil-2"))


@pytest.fixture
def libsignal_peer(peer_pool: PeerPool, libsignal_folder: Path) -> JsonPeer:
    """The libsignal harness, pinned build (0.90.0: classic fallback without SPQR)."""
    peer = peer_pool.get("libsignal", lambda: JsonPeer.libsignal(libsignal_folder))
    assert peer.ready.get("libsignal_version") == PINNED_VERSION, peer.ready
    return peer


@pytest.fixture
def libsignal_latest_peer(peer_pool: PeerPool) -> JsonPeer:
    """The libsignal harness running the newest build (``LIBSIGNAL_PKG=libsignal-latest``)."""
    folder = find_libsignal_peer(LATEST_PACKAGE)
    return peer_pool.get(
        "libsignal-latest", lambda: JsonPeer.libsignal(folder, package=LATEST_PACKAGE)
    )


# --- initiator / responder pairs --------------------------------------------------------------


PAIRS = {
    "veil-starts": ("veil_peer", "libsignal_peer"),
    "libsignal-starts": ("libsignal_peer", "veil_peer"),
    "veil-veil-control": ("veil_peer", "veil_peer_2"),
}


@pytest.fixture(params=list(PAIRS))
def pair(request: pytest.FixtureRequest) -> Pair:
    """(initiator, responder): Veil -> libsignal, libsignal -> Veil, and Veil -> Veil."""
    initiator, responder = PAIRS[request.param]
    return Pair(request.getfixturevalue(initiator), request.getfixturevalue(responder))


@pytest.fixture(params=["veil-starts", "libsignal-starts"])
def cross_pair(request: pytest.FixtureRequest) -> Pair:
    """Only the two Veil/libsignal directions (no control)."""
    initiator, responder = PAIRS[request.param]
    return Pair(request.getfixturevalue(initiator), request.getfixturevalue(responder))
