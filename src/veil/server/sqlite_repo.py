"""The SQLite repository: the embedded default storage (ARCHITECTURE.md §4).

One dedicated thread owns one connection (WAL, ``synchronous=FULL`` so a committed write
survives power loss, foreign keys on); coroutines hand it callables through
:class:`SqliteExecutor` and await the result. Every repository method is one transaction on
that thread, so methods are serialized in this process, and ``BEGIN IMMEDIATE`` takes
SQLite's write lock up front so they stay serialized against other processes too. The
contract is the one of :class:`veil.server.repository.Repository`.

Group commit: :meth:`SqliteRepository.store_message` and :meth:`~SqliteRepository.ack_envelopes`
(the hot writes) go through :meth:`SqliteExecutor.run_grouped`, so those queued together share
one transaction and one ``fsync``, each in its own ``SAVEPOINT``; each call still returns only
after the ``COMMIT`` that made its writes durable, so "stored before acked" holds.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TypeVar

from veil.server import (
    migrations,
    sqlite_attachments,
    sqlite_messages,
    sqlite_provisioning,
    sqlite_social,
)
from veil.server.model import (
    MAX_DEVICE_ID,
    PRIMARY_DEVICE_ID,
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
from veil.server.repository import (
    NotFoundError,
    PutOutcome,
    RepositoryError,
    TooManyDevicesError,
    UsernameTakenError,
)
from veil.server.sqlite_executor import SqliteExecutor, Work, transaction

_T = TypeVar("_T")

DIALECT: Final = "sqlite"
#: Envelopes one expiry transaction deletes at most (the write lock is released between them).
EXPIRE_BATCH: Final = 1000
# Column lists in the field order of model.Account / model.Device (rows become Account(*row)).
_ACCOUNT_BY_ID: Final = (
    "SELECT account_id, username, display_username, identity_key, created_ms"
    " FROM accounts WHERE account_id = ?"
)
_ACCOUNT_BY_NAME: Final = (
    "SELECT account_id, username, display_username, identity_key, created_ms"
    " FROM accounts WHERE username = ?"
)
_INSERT_ACCOUNT: Final = (
    "INSERT INTO accounts (account_id, username, display_username, identity_key, created_ms)"
    " VALUES (?, ?, ?, ?, ?)"
)
_DEVICE_BY_ID: Final = (
    "SELECT account_id, device_id, registration_id, credential_hash, name, created_ms"
    " FROM devices WHERE account_id = ? AND device_id = ?"
)
_DEVICES_OF: Final = (
    "SELECT account_id, device_id, registration_id, credential_hash, name, created_ms"
    " FROM devices WHERE account_id = ? ORDER BY device_id"
)
_INSERT_DEVICE: Final = (
    "INSERT INTO devices"
    " (account_id, device_id, registration_id, credential_hash, name, created_ms)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


class SqliteRepository:
    """:class:`veil.server.repository.Repository` on one SQLite file (or ``":memory:"``)."""

    ids_visible_in_order: Final = True
    """Envelope ids become visible in id order: ``AUTOINCREMENT`` ids are assigned under
    SQLite's single write lock (even across processes), so a lower id is always committed
    before a higher one is allocated. :class:`veil.server.delivery.DeviceStream` then reads
    after a cursor instead of re-reading the queue's head."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.executor: Final = SqliteExecutor(path, busy_timeout_ms=busy_timeout_ms)
        self.path: Final = Path(path)
        """The database file (attachments are stored as files next to it by default)."""

    async def _write(self, work: Work[_T]) -> _T:
        return await self.executor.run(lambda conn: transaction(conn, work, write=True))

    async def _read(self, work: Work[_T]) -> _T:
        return await self.executor.run(lambda conn: transaction(conn, work, write=False))

    async def _read_statement(self, work: Work[_T]) -> _T:
        """A read that is ONE ``SELECT``: no ``BEGIN``/``COMMIT`` around it.

        The connection is in autocommit mode, so SQLite runs the statement in its own
        implicit read transaction (one consistent snapshot), exactly what ``BEGIN ...
        COMMIT`` around it would give, for two fewer statements on the hot paths.
        """
        return await self.executor.run(work)

    async def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction; return the version."""
        return await self.executor.run(_migrate)

    async def close(self) -> None:
        """Finish pending work, close the connection and stop the thread."""
        await self.executor.close()

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
        account = Account(account_id, username, display_username, identity_key, now_ms)
        return await self._write(lambda conn: _create_account(conn, account, primary))

    async def get_account(self, account_id: str) -> Account | None:
        """The account with this id."""
        row = await self._read(lambda conn: conn.execute(_ACCOUNT_BY_ID, (account_id,)).fetchone())
        return None if row is None else Account(*row)

    async def find_account(self, username: str) -> Account | None:
        """The account with this canonical username."""
        row = await self._read(lambda conn: conn.execute(_ACCOUNT_BY_NAME, (username,)).fetchone())
        return None if row is None else Account(*row)

    async def delete_account(self, account_id: str) -> bool:
        """Delete the account; devices and keys follow by ``ON DELETE CASCADE``."""
        sql = "DELETE FROM accounts WHERE account_id = ?"
        return await self._write(lambda conn: conn.execute(sql, (account_id,)).rowcount > 0)

    # --- devices ----------------------------------------------------------------------------
    async def add_device(self, account_id: str, device: NewDevice, now_ms: int) -> Device:
        """Register a linked device under the lowest free id >= 2."""
        return await self._write(lambda conn: _add_device(conn, account_id, device, now_ms))

    async def get_device(self, account_id: str, device_id: int) -> Device | None:
        """One device."""
        row = await self._read_statement(
            lambda conn: conn.execute(_DEVICE_BY_ID, (account_id, device_id)).fetchone()
        )
        return None if row is None else Device(*row)

    async def list_devices(self, account_id: str) -> list[Device]:
        """The account's devices, by id."""
        rows = await self._read(lambda conn: conn.execute(_DEVICES_OF, (account_id,)).fetchall())
        return [Device(*row) for row in rows]

    async def remove_device(self, account_id: str, device_id: int) -> bool:
        """Remove a device; its keys follow by ``ON DELETE CASCADE``."""
        sql = "DELETE FROM devices WHERE account_id = ? AND device_id = ?"
        return await self._write(
            lambda conn: conn.execute(sql, (account_id, device_id)).rowcount > 0
        )

    # --- keys ---------------------------------------------------------------------------------
    async def set_signed_prekey(self, account_id: str, device_id: int, key: SignedPreKey) -> None:
        """Replace the device's signed prekey (:class:`NotFoundError` without the device)."""
        sql = (
            "INSERT INTO signed_prekeys (account_id, device_id, key_id, public_key, signature)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, device_id) DO UPDATE SET"
            " key_id = excluded.key_id, public_key = excluded.public_key,"
            " signature = excluded.signature"
        )
        args = (account_id, device_id, key.key_id, key.public_key, key.signature)
        await self._write(lambda conn: _on_device(conn, account_id, device_id, sql, [args]))

    async def set_last_resort_kyber(
        self, account_id: str, device_id: int, key: KyberPreKey
    ) -> None:
        """Replace the device's last-resort Kyber prekey."""
        args = (account_id, device_id, key.key_id, key.public_key, key.signature)
        await self._write(lambda conn: _set_last_resort(conn, args))

    async def add_one_time_prekeys(
        self, account_id: str, device_id: int, keys: Sequence[OneTimePreKey]
    ) -> None:
        """Add one-time EC prekeys (a key id already present is replaced)."""
        sql = (
            "INSERT INTO one_time_prekeys (account_id, device_id, key_id, public_key)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET"
            " public_key = excluded.public_key"
        )
        rows = [(account_id, device_id, k.key_id, k.public_key) for k in keys]
        await self._write(lambda conn: _on_device(conn, account_id, device_id, sql, rows))

    async def add_kyber_prekeys(
        self, account_id: str, device_id: int, keys: Sequence[KyberPreKey]
    ) -> None:
        """Add one-time Kyber prekeys (a key id already present is replaced)."""
        sql = (
            "INSERT INTO kyber_prekeys"
            " (account_id, device_id, last_resort, key_id, public_key, signature)"
            " VALUES (?, ?, 0, ?, ?, ?)"
            " ON CONFLICT (account_id, device_id, last_resort, key_id) DO UPDATE SET"
            " public_key = excluded.public_key, signature = excluded.signature"
        )
        rows = [(account_id, device_id, k.key_id, k.public_key, k.signature) for k in keys]
        await self._write(lambda conn: _on_device(conn, account_id, device_id, sql, rows))

    async def prekey_counts(self, account_id: str, device_id: int) -> PreKeyCounts:
        """Unused one-time keys left ((0, 0) for an unknown device)."""
        return await self._read(lambda conn: _prekey_counts(conn, account_id, device_id))

    async def take_bundle(self, account_id: str, device_id: int) -> DeviceBundle | None:
        """A bundle for one device, consuming its one-time keys atomically."""
        return await self._write(lambda conn: _take_bundle(conn, account_id, device_id))

    # --- messages (the SQL work is in sqlite_messages) -----------------------------------------
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
        """Check the device set and store one message (group commit: see the module doc)."""
        store = sqlite_messages.store_message
        sender, recipient, key = sender_account_id, recipient_account_id, idempotency_key
        return await self.executor.run_grouped(
            lambda conn: store(
                conn, sender, sender_device_id, recipient, envelopes, key, now_ms, max_queue
            )
        )

    async def fetch_envelopes(
        self, account_id: str, device_id: int, after_id: int, limit: int
    ) -> list[Envelope]:
        """Up to ``limit`` queued envelopes with id > ``after_id``, in id order."""
        fetch = sqlite_messages.fetch_envelopes
        return await self._read_statement(
            lambda conn: fetch(conn, account_id, device_id, after_id, limit)
        )

    async def ack_envelopes(self, account_id: str, device_id: int, ids: Sequence[int]) -> int:
        """Delete these envelopes from this device's queue; how many were deleted."""
        ack = sqlite_messages.ack_envelopes
        return await self.executor.run_grouped(lambda conn: ack(conn, account_id, device_id, ids))

    async def queue_depth(self, account_id: str, device_id: int) -> int:
        """How many envelopes the device's queue holds."""
        depth = sqlite_messages.queue_depth
        return await self._read(lambda conn: depth(conn, account_id, device_id))

    async def purge_idempotency(self, older_than_ms: int) -> int:
        """Forget idempotency answers recorded before ``older_than_ms``."""
        purge = sqlite_messages.purge_idempotency
        return await self._write(lambda conn: purge(conn, older_than_ms))

    async def expire_envelopes(self, older_than_ms: int) -> int:
        """Delete envelopes stored before ``older_than_ms``, :data:`EXPIRE_BATCH` per
        transaction; how many."""
        expire = sqlite_messages.expire_envelopes
        total = 0
        while True:
            n = await self._write(lambda conn: expire(conn, older_than_ms, EXPIRE_BATCH))
            total += n
            if n < EXPIRE_BATCH:
                return total

    # --- social graph (the SQL work is in sqlite_social) ---------------------------------------
    async def follow(self, follower: str, followee: str, now_ms: int) -> bool:
        """``follower`` follows ``followee``; False if unknown or blocking the follower."""
        follow = sqlite_social.follow
        return await self._social_write(lambda conn: follow(conn, follower, followee, now_ms))

    async def unfollow(self, follower: str, followee: str) -> bool:
        """Stop following."""
        unfollow = sqlite_social.unfollow
        return await self._write(lambda conn: unfollow(conn, follower, followee))

    async def following(self, account_id: str) -> list[LinkedAccount]:
        """The accounts ``account_id`` follows."""
        listed = sqlite_social.listed
        return await self._read_statement(lambda conn: listed(conn, "following", account_id))

    async def followers(self, account_id: str) -> list[LinkedAccount]:
        """The accounts that follow ``account_id``."""
        listed = sqlite_social.listed
        return await self._read_statement(lambda conn: listed(conn, "followers", account_id))

    async def accept_chat(self, owner: str, peer: str, now_ms: int) -> bool:
        """``owner`` accepts ``peer``'s messages; False if ``peer`` is unknown."""
        accept = sqlite_social.accept_chat
        return await self._social_write(lambda conn: accept(conn, owner, peer, now_ms))

    async def decline_chat(self, owner: str, peer: str) -> bool:
        """Remove chats(owner, peer)."""
        decline = sqlite_social.decline_chat
        return await self._write(lambda conn: decline(conn, owner, peer))

    async def block(self, blocker: str, blocked: str, now_ms: int) -> int | None:
        """Block, drop the blocked account's queued envelopes, remove follows (one transaction)."""
        block = sqlite_social.block
        return await self._social_write(lambda conn: block(conn, blocker, blocked, now_ms))

    async def unblock(self, blocker: str, blocked: str) -> bool:
        """Remove a block."""
        unblock = sqlite_social.unblock
        return await self._write(lambda conn: unblock(conn, blocker, blocked))

    async def blocked_accounts(self, account_id: str) -> list[LinkedAccount]:
        """The accounts ``account_id`` blocks."""
        listed = sqlite_social.listed
        return await self._read_statement(lambda conn: listed(conn, "blocks", account_id))

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` blocks ``blocked``."""
        is_blocked = sqlite_social.is_blocked
        return await self._read_statement(lambda conn: is_blocked(conn, blocker, blocked))

    async def relation(self, account_id: str, other: str) -> Relation | None:
        """Follows, chats and block between the two; None if ``other`` is unknown."""
        relation = sqlite_social.relation
        return await self._read_statement(lambda conn: relation(conn, account_id, other))

    async def _social_write(self, work: Work[_T]) -> _T:
        """A write whose insert names the caller's account: gone, it is :class:`NotFoundError`."""
        try:
            return await self._write(work)
        except sqlite3.IntegrityError:  # the foreign key to the caller's own account
            raise NotFoundError("account") from None

    # --- provisioning (the SQL work is in sqlite_provisioning) ---------------------------------
    async def create_provisioning(
        self, provisioning_id: str, token_hash: bytes, now_ms: int, expires_ms: int
    ) -> None:
        """Open an empty provisioning mailbox."""
        create = sqlite_provisioning.create
        await self._write(lambda c: create(c, provisioning_id, token_hash, now_ms, expires_ms))

    async def get_provisioning(self, provisioning_id: str) -> Provisioning | None:
        """The mailbox, expired or not."""
        get = sqlite_provisioning.get
        return await self._read_statement(lambda conn: get(conn, provisioning_id))

    async def put_provisioning_message(
        self, provisioning_id: str, message: bytes, now_ms: int
    ) -> PutOutcome:
        """Store the message in a live, empty mailbox."""
        put = sqlite_provisioning.put_message
        return await self._write(lambda conn: put(conn, provisioning_id, message, now_ms))

    async def take_provisioning_message(self, provisioning_id: str, now_ms: int) -> bytes | None:
        """Delete a live mailbox holding a message; the message."""
        take = sqlite_provisioning.take_message
        return await self._write(lambda conn: take(conn, provisioning_id, now_ms))

    async def delete_provisioning(self, provisioning_id: str) -> bool:
        """Delete a mailbox."""
        delete = sqlite_provisioning.delete
        return await self._write(lambda conn: delete(conn, provisioning_id))

    async def add_provisioning_code(
        self, code_hash: bytes, account_id: str, now_ms: int, expires_ms: int
    ) -> None:
        """Record a linking code's hash."""
        add = sqlite_provisioning.add_code
        await self._write(lambda conn: add(conn, code_hash, account_id, now_ms, expires_ms))

    async def link_device(
        self, account_id: str, code_hash: bytes, device: NewDevice, now_ms: int
    ) -> Device | None:
        """Consume the code and add the device in one transaction (the write lock)."""
        return await self._write(
            lambda conn: _link_device(conn, account_id, code_hash, device, now_ms)
        )

    async def purge_provisioning(self, now_ms: int) -> int:
        """Delete expired mailboxes and codes."""
        purge = sqlite_provisioning.purge
        return await self._write(lambda conn: purge(conn, now_ms))

    # --- attachment metadata (the SQL work is in sqlite_attachments) ----------------------------
    async def add_attachment(
        self, attachment_id: str, account_id: str, now_ms: int, deadline_ms: int
    ) -> None:
        """Record an upload that is starting."""
        add = sqlite_attachments.add
        await self._write(lambda conn: add(conn, attachment_id, account_id, now_ms, deadline_ms))

    async def finish_attachment(
        self, attachment_id: str, size: int, sha256: bytes, now_ms: int, expires_ms: int
    ) -> bool:
        """Mark a live, incomplete upload complete."""
        finish = sqlite_attachments.finish
        return await self._write(
            lambda conn: finish(conn, attachment_id, size, sha256, now_ms, expires_ms)
        )

    async def get_attachment(self, attachment_id: str) -> Attachment | None:
        """The metadata row."""
        get = sqlite_attachments.get
        return await self._read_statement(lambda conn: get(conn, attachment_id))

    async def expire_attachment(self, attachment_id: str, account_id: str, now_ms: int) -> bool:
        """Make the owner's live, complete attachment expired now."""
        expire = sqlite_attachments.expire
        return await self._write(lambda conn: expire(conn, attachment_id, account_id, now_ms))

    async def expired_attachments(self, now_ms: int, limit: int) -> list[str]:
        """Ids of up to ``limit`` expired attachments."""
        expired = sqlite_attachments.expired
        return await self._read_statement(lambda conn: expired(conn, now_ms, limit))

    async def remove_attachments(self, attachment_ids: Sequence[str]) -> int:
        """Delete these metadata rows."""
        remove = sqlite_attachments.remove
        return await self._write(lambda conn: remove(conn, attachment_ids))


# --- work run on the database thread, inside a transaction ----------------------------------


def _migrate(conn: sqlite3.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL,"
        " applied_ms INTEGER NOT NULL)"
    )
    known = migrations.load(DIALECT)
    for version, name, sql in known:
        transaction(
            conn, functools.partial(_apply, version=version, name=name, sql=sql), write=True
        )
    current = _schema_version(conn)
    if current > len(known):
        raise RepositoryError(f"schema version {current} is newer than this code ({len(known)})")
    return current


def _apply(conn: sqlite3.Connection, *, version: int, name: str, sql: str) -> None:
    """Apply one migration unless it is in place (another process may have applied it)."""
    if _schema_version(conn) >= version:
        return
    for statement in _statements(sql):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO schema_version (version, name, applied_ms) VALUES (?, ?, ?)",
        (version, name, time.time_ns() // 1_000_000),
    )


def _schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    version: int = row[0]
    return version


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would COMMIT the transaction)."""
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):  # a ';' inside a string or trigger is not an end
            statements.append(buffer)
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
    return statements


def _create_account(conn: sqlite3.Connection, account: Account, primary: NewDevice) -> Account:
    try:
        a = account
        args = (a.account_id, a.username, a.display_username, a.identity_key, a.created_ms)
        conn.execute(_INSERT_ACCOUNT, args)
    except sqlite3.IntegrityError:
        sql = "SELECT 1 FROM accounts WHERE username = ?"
        if conn.execute(sql, (account.username,)).fetchone() is not None:
            raise UsernameTakenError(account.username) from None
        raise
    _insert_device(conn, account.account_id, PRIMARY_DEVICE_ID, primary, account.created_ms)
    return account


def _insert_device(
    conn: sqlite3.Connection, account_id: str, device_id: int, device: NewDevice, now_ms: int
) -> Device:
    args = (account_id, device_id, device.registration_id, device.credential_hash, device.name)
    conn.execute(_INSERT_DEVICE, (*args, now_ms))
    return Device(*args, now_ms)


def _add_device(
    conn: sqlite3.Connection, account_id: str, device: NewDevice, now_ms: int
) -> Device:
    exists = conn.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,))
    if exists.fetchone() is None:
        raise NotFoundError(f"no account {account_id!r}")
    sql = "SELECT device_id FROM devices WHERE account_id = ? AND device_id >= 2"
    used = {row[0] for row in conn.execute(sql, (account_id,))}
    free = next((i for i in range(2, MAX_DEVICE_ID + 1) if i not in used), None)
    if free is None:
        raise TooManyDevicesError(account_id)
    return _insert_device(conn, account_id, free, device, now_ms)


def _link_device(
    conn: sqlite3.Connection, account_id: str, code_hash: bytes, device: NewDevice, now_ms: int
) -> Device | None:
    """Consume a live code (an expired one is deleted all the same) and add the device."""
    if not sqlite_provisioning.consume_code(conn, account_id, code_hash, now_ms):
        return None
    return _add_device(conn, account_id, device, now_ms)  # raising rolls the consumption back


def _require_device(conn: sqlite3.Connection, account_id: str, device_id: int) -> None:
    sql = "SELECT 1 FROM devices WHERE account_id = ? AND device_id = ?"
    if conn.execute(sql, (account_id, device_id)).fetchone() is None:
        raise NotFoundError(f"no device {device_id} of account {account_id!r}")


def _on_device(
    conn: sqlite3.Connection,
    account_id: str,
    device_id: int,
    sql: str,
    rows: Sequence[tuple[object, ...]],
) -> None:
    """Check that the device exists, then run ``sql`` once per row."""
    _require_device(conn, account_id, device_id)
    conn.executemany(sql, rows)


def _set_last_resort(conn: sqlite3.Connection, args: tuple[str, int, int, bytes, bytes]) -> None:
    account_id, device_id = args[0], args[1]
    _require_device(conn, account_id, device_id)
    conn.execute(
        "DELETE FROM kyber_prekeys WHERE account_id = ? AND device_id = ? AND last_resort = 1",
        (account_id, device_id),
    )
    conn.execute(
        "INSERT INTO kyber_prekeys"
        " (account_id, device_id, last_resort, key_id, public_key, signature)"
        " VALUES (?, ?, 1, ?, ?, ?)",
        args,
    )


def _prekey_counts(conn: sqlite3.Connection, account_id: str, device_id: int) -> PreKeyCounts:
    ec = conn.execute(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE account_id = ? AND device_id = ?",
        (account_id, device_id),
    ).fetchone()[0]
    kyber = conn.execute(
        "SELECT COUNT(*) FROM kyber_prekeys"
        " WHERE account_id = ? AND device_id = ? AND last_resort = 0",
        (account_id, device_id),
    ).fetchone()[0]
    return PreKeyCounts(one_time_ec=ec, one_time_kyber=kyber)


def _take_bundle(conn: sqlite3.Connection, account_id: str, device_id: int) -> DeviceBundle | None:
    ids = (account_id, device_id)
    head = conn.execute(
        "SELECT d.registration_id, a.identity_key, s.key_id, s.public_key, s.signature"
        " FROM devices AS d"
        " JOIN accounts AS a ON a.account_id = d.account_id"
        " JOIN signed_prekeys AS s ON s.account_id = d.account_id AND s.device_id = d.device_id"
        " WHERE d.account_id = ? AND d.device_id = ?",
        ids,
    ).fetchone()
    # One-time Kyber keys sort before the last-resort key (last_resort 0 < 1).
    kyber = conn.execute(
        "SELECT last_resort, key_id, public_key, signature FROM kyber_prekeys"
        " WHERE account_id = ? AND device_id = ? ORDER BY last_resort, key_id LIMIT 1",
        ids,
    ).fetchone()
    if head is None or kyber is None:
        return None
    last_resort, kyber_id = bool(kyber[0]), kyber[1]
    if not last_resort:
        conn.execute(
            "DELETE FROM kyber_prekeys"
            " WHERE account_id = ? AND device_id = ? AND last_resort = 0 AND key_id = ?",
            (*ids, kyber_id),
        )
    one_time = conn.execute(
        "SELECT key_id, public_key FROM one_time_prekeys"
        " WHERE account_id = ? AND device_id = ? ORDER BY key_id LIMIT 1",
        ids,
    ).fetchone()
    if one_time is not None:
        conn.execute(
            "DELETE FROM one_time_prekeys WHERE account_id = ? AND device_id = ? AND key_id = ?",
            (*ids, one_time[0]),
        )
    return DeviceBundle(
        device_id=device_id,
        registration_id=head[0],
        identity_key=head[1],
        signed_prekey=SignedPreKey(key_id=head[2], public_key=head[3], signature=head[4]),
        kyber_prekey=KyberPreKey(key_id=kyber_id, public_key=kyber[2], signature=kyber[3]),
        kyber_last_resort=last_resort,
        one_time_prekey=None if one_time is None else OneTimePreKey(one_time[0], one_time[1]),
    )
