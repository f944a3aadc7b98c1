"""Veil's error hierarchy (ARCHITECTURE.md §6.3).

One root, :class:`VeilError`, with three branches:

* :class:`LocalError` -- the caller misused an API (wrong argument, wrong state);
* :class:`RemoteError` -- a peer or the server sent something bad; every parser raises only
  :class:`DecodeError`, which is a :class:`RemoteError`;
* :class:`InternalError` -- a bug or an invariant that does not hold.

Errors carry structured fields, never secrets: no key, plaintext or ciphertext bytes appear in
their messages or ``repr``.
"""

from __future__ import annotations


class VeilError(Exception):
    """Root of every error Veil raises on purpose."""


class LocalError(VeilError):
    """The caller misused an API."""


class RemoteError(VeilError):
    """Input from a peer or the server was invalid."""


class InternalError(VeilError):
    """An invariant failed inside Veil."""


class DecodeError(RemoteError):
    """Bytes could not be parsed: truncated, malformed, wrong type or out of range."""


class InvalidKeyError(RemoteError):
    """A public key is not acceptable (wrong type byte, length, or not canonical)."""


class InvalidSignatureError(RemoteError):
    """A signature (e.g. over a signed prekey or Kyber prekey) does not verify."""


class DecryptionError(RemoteError):
    """Base class of every failure to decrypt a Signal message."""


class BadMacError(DecryptionError):
    """The message authentication code does not verify: the message was forged or damaged."""


class SpqrRequiredError(BadMacError):
    """The MAC failed on a message that carries SPQR (post-quantum ratchet) data.

    Peers from libsignal 0.92 on require SPQR and salt every message key with it; Veil does not
    implement SPQR yet, so their messages cannot be authenticated here. libsignal 0.83-0.90 also
    attach SPQR data to their first messages without using it for keys, so for them this error
    means the message was damaged, exactly like :class:`BadMacError`.
    """


class DuplicateMessageError(DecryptionError):
    """The message was already decrypted (its key is gone): a replay or a duplicate delivery."""

    def __init__(self, chain_index: int, counter: int) -> None:
        super().__init__(f"duplicate message: counter {counter}, chain already at {chain_index}")
        self.chain_index = chain_index
        self.counter = counter


class TooFarAheadError(DecryptionError):
    """The message counter is further ahead of the chain than the receiver will skip."""

    def __init__(self, chain_index: int, counter: int, limit: int) -> None:
        super().__init__(
            f"message counter {counter} is more than {limit} ahead of chain index {chain_index}"
        )
        self.chain_index = chain_index
        self.counter = counter
        self.limit = limit


class NoSessionError(DecryptionError):
    """There is no session (or no usable session state) with this peer."""


class UntrustedIdentityError(RemoteError):
    """The peer's identity key differs from the one we trust for them."""

    def __init__(self, peer: str) -> None:
        super().__init__(f"untrusted identity key for {peer}")
        self.peer = peer


class InvalidPreKeyError(RemoteError):
    """A PreKey message names a prekey we do not have (used up, or never ours)."""

    def __init__(self, kind: str, key_id: int) -> None:
        super().__init__(f"unknown {kind} id {key_id}")
        self.kind = kind
        self.key_id = key_id


class UnsupportedVersionError(DecodeError):
    """The message uses a protocol version or feature Veil does not speak (e.g. X3DH v3, SPQR)."""


class SessionExpiredError(LocalError):
    """The session's initial PreKey message was never acknowledged in time; start a new one."""
