"""The storage interface the services use; implemented for SQLite and PostgreSQL.

Every method is one transaction: it either happens entirely or not at all. Implementations:
:mod:`veil.server.sqlite_repo` (embedded default, one writer) and
:mod:`veil.server.postgres_repo` (asyncpg; several server processes share it).

Contract points the tests check for both:

* usernames are unique in their canonical form; a clash raises :class:`UsernameTakenError`;
* device ids are 1..127; a new linked device takes the lowest free id >= 2
  (:class:`TooManyDevicesError` when none is free);
* :meth:`Repository.take_bundle` consumes one one-time EC prekey and one one-time Kyber prekey
  atomically: two concurrent fetches never get the same one-time key; without a one-time Kyber
  key the last-resort key is served (and kept);
* removing a device or an account removes its keys (and later its queue) in the same
  transaction; a future queue table needs ``ON DELETE CASCADE`` from devices;
* adding keys (even an empty batch) or setting a key for an unknown device raises
  :class:`NotFoundError`; re-adding a key id replaces it;
* policy (who may remove device 1, id ranges) is the services' job, not the repository's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from veil.server.model import (
    Account,
    Attachment,
    Device,
    DeviceBundle,
    DeviceMismatch,
    Envelope,
    KyberPreKey,
    LinkedAccount,
    NewDevice,
    OneTimePreKey,
    OutgoingEnvelope,
    PreKeyCounts,
    Provisioning,
    Relation,
    SignedPreKey,
    StoredMessage,
)


class RepositoryError(Exception):
    """Base of the storage errors the services translate into HTTP answers."""


class UsernameTakenError(RepositoryError):
    """The canonical username is already registered."""


class TooManyDevicesError(RepositoryError):
    """All device ids 2..127 of the account are in use."""


class NotFoundError(RepositoryError):
    """The account or device does not exist."""


class QueueFullError(RepositoryError):
    """A target device's queue is at its limit; nothing of the send was stored."""

    def __init__(self, account_id: str, device_id: int) -> None:
        super().__init__(f"queue of {account_id}.{device_id} is full")
        self.account_id = account_id
        self.device_id = device_id


PutOutcome = Literal["stored", "missing", "occupied"]
"""What :meth:`Repository.put_provisioning_message` did: stored it, or no live mailbox, or the
mailbox already holds a message."""


class Repository(Protocol):
    """Accounts, devices and the key directory."""

    async def migrate(self) -> int:
        """Apply pending schema migrations; return the schema version now in place."""

    async def close(self) -> None:
        """Release connections and threads."""

    # --- accounts ---------------------------------------------------------------------------
    async def create_account(
        self,
        account_id: str,
        username: str,
        display_username: str,
        identity_key: bytes,
        primary: NewDevice,
        now_ms: int,
    ) -> Account:
        """Create an account with its primary device (id 1)."""

    async def get_account(self, account_id: str) -> Account | None:
        """The account with this id."""

    async def find_account(self, username: str) -> Account | None:
        """The account with this canonical username."""

    async def delete_account(self, account_id: str) -> bool:
        """Delete the account, its devices and their keys; False if it did not exist."""

    # --- devices ----------------------------------------------------------------------------
    async def add_device(self, account_id: str, device: NewDevice, now_ms: int) -> Device:
        """Register a linked device under the lowest free id >= 2."""

    async def get_device(self, account_id: str, device_id: int) -> Device | None:
        """One device."""

    async def list_devices(self, account_id: str) -> list[Device]:
        """The account's devices, by id."""

    async def remove_device(self, account_id: str, device_id: int) -> bool:
        """Remove a device and its keys; False if it did not exist."""

    # --- keys ---------------------------------------------------------------------------------
    async def set_signed_prekey(self, account_id: str, device_id: int, key: SignedPreKey) -> None:
        """Replace the device's signed prekey."""

    async def set_last_resort_kyber(
        self, account_id: str, device_id: int, key: KyberPreKey
    ) -> None:
        """Replace the device's last-resort Kyber prekey."""

    async def add_one_time_prekeys(
        self, account_id: str, device_id: int, keys: Sequence[OneTimePreKey]
    ) -> None:
        """Add one-time EC prekeys (a key id already present is replaced)."""

    async def add_kyber_prekeys(
        self, account_id: str, device_id: int, keys: Sequence[KyberPreKey]
    ) -> None:
        """Add one-time Kyber prekeys (a key id already present is replaced)."""

    async def prekey_counts(self, account_id: str, device_id: int) -> PreKeyCounts:
        """Unused one-time keys left; (0, 0) for an unknown device."""

    async def take_bundle(self, account_id: str, device_id: int) -> DeviceBundle | None:
        """A bundle for one device, consuming its one-time keys atomically.

        None if the device does not exist or has no signed prekey or no Kyber prekey at all.
        """

    # --- messages -------------------------------------------------------------------------------
    async def store_message(
        self,
        sender_account_id: str,
        sender_device_id: int,
        recipient_account_id: str,
        envelopes: Sequence[OutgoingEnvelope],
        idempotency_key: str | None,
        now_ms: int,
        max_queue: int,
    ) -> StoredMessage | list[DeviceMismatch]:
        """Store one message for every device of the recipient and the sender's other devices.

        In one transaction: if ``idempotency_key`` was already used by this sender, return the
        first answer (``duplicate=True``) and store nothing. Otherwise check the submitted
        device set against the current devices of ``recipient_account_id`` (all of them) and,
        when any envelope targets the sender's own account, of the sender's account (all but
        the sending device; a send to oneself is the same rule); on any difference return the
        mismatches (missing / extra / stale registration id) and store nothing. Raise
        :class:`NotFoundError` for an unknown recipient and :class:`QueueFullError` if a
        target queue already holds ``max_queue`` envelopes, and ``ValueError`` for two envelopes
        to one device (the services refuse that first). Otherwise store every envelope and
        the idempotency answer, commit (durably), and return ids and the server time.

        The send rule (``veil/wire/social.py``), in the same transaction, when the recipient B
        is not the sender A: if B blocks A, B's copies are not stored but get ids all the same
        (unique, never reused, in the answer and the idempotency answer) and are listed in
        ``dropped``; otherwise they are stored with ``request`` (and ``request`` is returned)
        unless chats(owner=B, peer=A) exists or A and B follow each other. A stored send also
        records chats(owner=A, peer=B) if missing. A's own copies are never requests.
        """

    async def fetch_envelopes(
        self, account_id: str, device_id: int, after_id: int, limit: int
    ) -> list[Envelope]:
        """Up to ``limit`` queued envelopes of one device with id > ``after_id``, in id order."""

    async def ack_envelopes(self, account_id: str, device_id: int, ids: Sequence[int]) -> int:
        """Delete these envelopes from this device's queue (others' are untouched); count."""

    async def queue_depth(self, account_id: str, device_id: int) -> int:
        """How many envelopes the device's queue holds."""

    async def purge_idempotency(self, older_than_ms: int) -> int:
        """Forget idempotency answers recorded before ``older_than_ms``; count removed."""

    async def expire_envelopes(self, older_than_ms: int) -> int:
        """Delete the envelopes stored before ``older_than_ms`` (undelivered for too long);
        count removed. Done in short transactions of a bounded number of rows each, so a huge
        backlog never holds a long lock."""

    # --- social graph (SQL in sqlite_social / postgres_social) ----------------------------------
    async def follow(self, follower: str, followee: str, now_ms: int) -> bool:
        """``follower`` follows ``followee`` (again: no change); False, and nothing written,
        if ``followee`` does not exist or blocks ``follower``."""

    async def unfollow(self, follower: str, followee: str) -> bool:
        """Stop following; False if there was no follow."""

    async def following(self, account_id: str) -> list[LinkedAccount]:
        """The accounts ``account_id`` follows, oldest follow first."""

    async def followers(self, account_id: str) -> list[LinkedAccount]:
        """The accounts that follow ``account_id``, oldest follow first."""

    async def accept_chat(self, owner: str, peer: str, now_ms: int) -> bool:
        """Record chats(owner, peer): ``owner`` accepts ``peer``'s messages in the inbox;
        False if ``peer`` does not exist."""

    async def decline_chat(self, owner: str, peer: str) -> bool:
        """Remove chats(owner, peer); False if there was none."""

    async def block(self, blocker: str, blocked: str, now_ms: int) -> int | None:
        """In one transaction: record the block, delete the envelopes ``blocked`` has queued
        for any device of ``blocker``, and remove the follows both ways. The number of
        envelopes deleted; None (nothing written) if ``blocked`` does not exist."""

    async def unblock(self, blocker: str, blocked: str) -> bool:
        """Remove a block; False if there was none."""

    async def blocked_accounts(self, account_id: str) -> list[LinkedAccount]:
        """The accounts ``account_id`` blocks, oldest block first."""

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` blocks ``blocked``."""

    async def relation(self, account_id: str, other: str) -> Relation | None:
        """Follows, chats and block between the two; None if ``other`` does not exist."""

    # --- provisioning (linking a new device; SQL in sqlite_/postgres_provisioning) --------------
    async def create_provisioning(
        self, provisioning_id: str, token_hash: bytes, now_ms: int, expires_ms: int
    ) -> None:
        """Open an empty provisioning mailbox."""

    async def get_provisioning(self, provisioning_id: str) -> Provisioning | None:
        """The mailbox, expired or not (the caller checks ``expires_ms``)."""

    async def put_provisioning_message(
        self, provisioning_id: str, message: bytes, now_ms: int
    ) -> PutOutcome:
        """Store the message in a live, empty mailbox (atomically: one of two puts wins)."""

    async def take_provisioning_message(self, provisioning_id: str, now_ms: int) -> bytes | None:
        """Delete a live mailbox that holds a message and return the message (at most once)."""

    async def delete_provisioning(self, provisioning_id: str) -> bool:
        """Delete a mailbox; False if there was none."""

    async def add_provisioning_code(
        self, code_hash: bytes, account_id: str, now_ms: int, expires_ms: int
    ) -> None:
        """Record a linking code's hash for an account (:class:`NotFoundError` without it)."""

    async def link_device(
        self, account_id: str, code_hash: bytes, device: NewDevice, now_ms: int
    ) -> Device | None:
        """Consume the account's live code and add the device, in one transaction.

        None (and the code, if expired, deleted) when the account has no such live code;
        :class:`TooManyDevicesError` (and the code kept) when no device id is free. Of two
        concurrent calls with one code, exactly one gets a device.
        """

    async def purge_provisioning(self, now_ms: int) -> int:
        """Delete expired mailboxes and codes; how many rows."""

    # --- attachments (metadata; the bytes are in a veil.server.blobs.BlobStore) ---------------
    async def add_attachment(
        self, attachment_id: str, account_id: str, now_ms: int, deadline_ms: int
    ) -> None:
        """Record an upload that is starting (incomplete, expiring at ``deadline_ms``)."""

    async def finish_attachment(
        self, attachment_id: str, size: int, sha256: bytes, now_ms: int, expires_ms: int
    ) -> bool:
        """Mark a live, incomplete upload complete; False if it is gone or expired."""

    async def get_attachment(self, attachment_id: str) -> Attachment | None:
        """The metadata, expired or incomplete or not (the caller checks)."""

    async def expire_attachment(self, attachment_id: str, account_id: str, now_ms: int) -> bool:
        """Make the owner's live, complete attachment expired now; False if none."""

    async def expired_attachments(self, now_ms: int, limit: int) -> list[str]:
        """Ids of up to ``limit`` attachments expired at ``now_ms`` (incomplete ones too)."""

    async def remove_attachments(self, attachment_ids: Sequence[str]) -> int:
        """Delete these metadata rows; how many were deleted."""
