"""PostgreSQL implementation of :class:`veil.server.repository.Repository` (asyncpg).

Several server processes share one database (ARCHITECTURE.md §4), so every invariant is held by
the database itself, not by the process: device ids are allocated under a row lock on the
account, and one-time prekeys are consumed with ``FOR UPDATE SKIP LOCKED`` so that concurrent
bundle fetches never get the same key and never wait for each other.

The message store is in :mod:`veil.server.postgres_messages`. Sends and acks are group
committed (:mod:`veil.server.postgres_batch`): the calls that arrive while earlier ones are
being committed share the next transaction, so N concurrent sends cost one round trip and one
``COMMIT`` instead of N; a lone call on an idle server goes at once. Every caller still gets its
own answer, after that ``COMMIT``.

Usage::

    repo = await PostgresRepository.connect("postgresql://veil@db/veil")
    await repo.migrate()
    ...
    await repo.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from veil.server import (
    migrations,
    postgres_attachments,
    postgres_messages,
    postgres_provisioning,
    postgres_social,
)
from veil.server.model import (
    MAX_DEVICE_ID,
    MIN_DEVICE_ID,
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
from veil.server.postgres_batch import GroupCommit
from veil.server.postgres_messages import AckRequest, FetchRequest, StoreOutcome, StoreRequest
from veil.server.repository import (
    NotFoundError,
    PutOutcome,
    TooManyDevicesError,
    UsernameTakenError,
)

__all__ = ["PostgresRepository"]

#: Most sends / acks one group commit (one transaction) takes.
STORE_BATCH: Final = 64
ACK_BATCH: Final = 256
#: Group-commit transactions of sends / acks in flight at once per process (each holds a pool
#: connection while it runs; the rest of the pool serves reads). A send batch's statements run
#: one after the other in one backend, so a few batches in flight keep the database's cores
#: busy; 4 measured at least as fast as 1 or 2 (benchmarks/bench_server.py, 2 cores). One ack
#: DELETE at a time is enough: it is short, and the acks queued behind it form the next one.
STORE_IN_FLIGHT: Final = 4
ACK_IN_FLIGHT: Final = 1
#: Envelopes one expiry transaction deletes at most (the sweeper loops over such batches).
EXPIRE_BATCH: Final = 1000
#: Queue reads of many devices (woken together) share one statement (read-only: no commit).
FETCH_BATCH: Final = 64
FETCH_IN_FLIGHT: Final = 2

#: Key of the advisory lock that serializes migrations across processes ("veil" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x7665696C

_SELECT_ACCOUNT: Final = (
    "SELECT account_id, username, display_username, identity_key, created_ms FROM accounts"
)
_INSERT_ACCOUNT: Final = (
    "INSERT INTO accounts (account_id, username, display_username, identity_key, created_ms)"
    " VALUES ($1, $2, $3, $4, $5)"
)
_SELECT_DEVICE: Final = (
    "SELECT account_id, device_id, registration_id, credential_hash, name, created_ms FROM devices"
)
_INSERT_DEVICE: Final = (
    "INSERT INTO devices"
    " (account_id, device_id, registration_id, credential_hash, name, created_ms)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)

_SCHEMA_VERSION_DDL: Final = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER     PRIMARY KEY,
    name       TEXT        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""

_LOWEST_FREE_DEVICE_ID: Final = """
SELECT min(g)::int FROM generate_series($2::int, $3::int) AS g
WHERE NOT EXISTS (SELECT FROM devices WHERE account_id = $1 AND device_id = g)"""

# One statement, hence one atomic transaction and one round trip. ``dev`` is the device with
# its identity key, signed prekey and last-resort Kyber key; nothing is consumed unless it
# exists. ``kyber`` consumes the lowest one-time Kyber key; ``ec`` consumes the lowest one-time
# EC key only if a Kyber key is served (a one-time one or the last-resort one), so a fetch
# that returns no bundle consumes nothing. The scalar subqueries run once (InitPlans);
# SKIP LOCKED makes concurrent fetches take different keys without waiting for each other.
_TAKE_BUNDLE: Final = """
WITH dev AS (
    SELECT d.registration_id, a.identity_key,
           s.key_id AS spk_id, s.public_key AS spk_pub, s.signature AS spk_sig,
           lr.key_id AS lr_id, lr.public_key AS lr_pub, lr.signature AS lr_sig
    FROM devices AS d
    JOIN accounts AS a ON a.account_id = d.account_id
    JOIN signed_prekeys AS s ON s.account_id = d.account_id AND s.device_id = d.device_id
    LEFT JOIN kyber_prekeys AS lr
        ON lr.account_id = d.account_id AND lr.device_id = d.device_id AND lr.last_resort
    WHERE d.account_id = $1 AND d.device_id = $2
), kyber AS (
    DELETE FROM kyber_prekeys
    WHERE account_id = $1 AND device_id = $2 AND NOT last_resort AND key_id = (
        SELECT key_id FROM kyber_prekeys
        WHERE account_id = $1 AND device_id = $2 AND NOT last_resort
          AND EXISTS (SELECT FROM dev)
        ORDER BY key_id LIMIT 1
        FOR UPDATE SKIP LOCKED)
    RETURNING key_id, public_key, signature
), ec AS (
    DELETE FROM one_time_prekeys
    WHERE account_id = $1 AND device_id = $2 AND key_id = (
        SELECT key_id FROM one_time_prekeys
        WHERE account_id = $1 AND device_id = $2
          AND (EXISTS (SELECT FROM kyber)
               OR EXISTS (SELECT FROM dev WHERE lr_id IS NOT NULL))
        ORDER BY key_id LIMIT 1
        FOR UPDATE SKIP LOCKED)
    RETURNING key_id, public_key
)
SELECT dev.*,
       kyber.key_id AS ky_id, kyber.public_key AS ky_pub, kyber.signature AS ky_sig,
       ec.key_id AS ec_id, ec.public_key AS ec_pub
FROM dev LEFT JOIN kyber ON true LEFT JOIN ec ON true"""


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: nothing to reset, saving a round trip per query.

    asyncpg still rolls back a transaction left open; the default reset (``RESET ALL``,
    ``UNLISTEN *``, advisory unlock, ...) is not needed because this module never sets session
    state (its advisory lock is transaction-level), and the pool is never handed out.
    """


def _valid_device_id(device_id: int) -> bool:
    return MIN_DEVICE_ID <= device_id <= MAX_DEVICE_ID


def _account(row: Any) -> Account:
    return Account(
        account_id=str(row["account_id"]),
        username=str(row["username"]),
        display_username=str(row["display_username"]),
        identity_key=bytes(row["identity_key"]),
        created_ms=int(row["created_ms"]),
    )


def _device(row: Any) -> Device:
    return Device(
        account_id=str(row["account_id"]),
        device_id=int(row["device_id"]),
        registration_id=int(row["registration_id"]),
        credential_hash=bytes(row["credential_hash"]),
        name=str(row["name"]),
        created_ms=int(row["created_ms"]),
    )


def _bundle(device_id: int, row: Any) -> DeviceBundle | None:
    if row["ky_id"] is not None:
        kyber, last_resort = (row["ky_id"], row["ky_pub"], row["ky_sig"]), False
    elif row["lr_id"] is not None:
        kyber, last_resort = (row["lr_id"], row["lr_pub"], row["lr_sig"]), True
    else:
        return None
    one_time = None
    if row["ec_id"] is not None:
        one_time = OneTimePreKey(key_id=int(row["ec_id"]), public_key=bytes(row["ec_pub"]))
    return DeviceBundle(
        device_id=device_id,
        registration_id=int(row["registration_id"]),
        identity_key=bytes(row["identity_key"]),
        signed_prekey=SignedPreKey(
            key_id=int(row["spk_id"]),
            public_key=bytes(row["spk_pub"]),
            signature=bytes(row["spk_sig"]),
        ),
        kyber_prekey=KyberPreKey(
            key_id=int(kyber[0]), public_key=bytes(kyber[1]), signature=bytes(kyber[2])
        ),
        kyber_last_resort=last_resort,
        one_time_prekey=one_time,
    )


class PostgresRepository:
    """The repository on a PostgreSQL database, through an asyncpg connection pool.

    Construct, then ``await open()`` (or use :meth:`connect`, which does both); call
    :meth:`migrate` once at start-up (safe to run from several processes at once).
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 20) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None
        self._stores: GroupCommit[StoreRequest, StoreOutcome] = GroupCommit(
            self._store_batch, max_batch=STORE_BATCH, max_in_flight=STORE_IN_FLIGHT
        )
        self._acks: GroupCommit[AckRequest, int] = GroupCommit(
            self._ack_batch, max_batch=ACK_BATCH, max_in_flight=ACK_IN_FLIGHT
        )
        self._reads: GroupCommit[FetchRequest, list[Envelope]] = GroupCommit(
            self._fetch_batch, max_batch=FETCH_BATCH, max_in_flight=FETCH_IN_FLIGHT
        )

    def __repr__(self) -> str:  # the DSN may hold a password
        return f"PostgresRepository(open={self._pool is not None})"

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 20
    ) -> PostgresRepository:
        """A repository with its pool open."""
        repo = cls(dsn, min_size=min_size, max_size=max_size)
        await repo.open()
        return repo

    async def open(self) -> None:
        """Create the connection pool (idempotent)."""
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min_size, max_size=self._max_size, reset=_keep_session
            )

    async def close(self) -> None:
        """Close the pool, waiting for connections in use to be released."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def _db(self) -> Any:
        """The asyncpg pool (raises if the repository is not open)."""
        if self._pool is None:
            raise RuntimeError("PostgresRepository is not open: await open() first")
        return self._pool

    @property
    def pool(self) -> Any:
        """The asyncpg pool, for stores that share this database (attachment chunks)."""
        return self._db

    async def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction.

        Each transaction first takes a transaction-level advisory lock and re-reads the
        version, so processes starting together apply every migration exactly once.
        """
        version = 0
        async with self._db.acquire() as conn:
            for number, name, sql in migrations.load("postgres"):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                    await conn.execute(_SCHEMA_VERSION_DDL)
                    version = int(
                        await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
                    )
                    if number > version:
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                            number,
                            name,
                        )
                        version = number
        return version

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
        async with self._db.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    _INSERT_ACCOUNT,
                    account_id,
                    username,
                    display_username,
                    identity_key,
                    now_ms,
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "accounts_username_key":
                    raise UsernameTakenError(username) from None
                raise
            await self._insert_device(conn, account_id, PRIMARY_DEVICE_ID, primary, now_ms)
        return Account(account_id, username, display_username, identity_key, now_ms)

    async def get_account(self, account_id: str) -> Account | None:
        """The account with this id."""
        row = await self._db.fetchrow(_SELECT_ACCOUNT + " WHERE account_id = $1", account_id)
        return None if row is None else _account(row)

    async def find_account(self, username: str) -> Account | None:
        """The account with this canonical username."""
        row = await self._db.fetchrow(_SELECT_ACCOUNT + " WHERE username = $1", username)
        return None if row is None else _account(row)

    async def delete_account(self, account_id: str) -> bool:
        """Delete the account; devices and keys go with it (ON DELETE CASCADE)."""
        deleted = await self._db.fetchval(
            "DELETE FROM accounts WHERE account_id = $1 RETURNING true", account_id
        )
        return deleted is not None

    # --- devices ----------------------------------------------------------------------------
    async def add_device(self, account_id: str, device: NewDevice, now_ms: int) -> Device:
        """Register a linked device under the lowest free id >= 2.

        The account row is locked first, so concurrent additions (from any process) are
        serialized and never pick the same id.
        """
        async with self._db.acquire() as conn, conn.transaction():
            return await self._add_device(conn, account_id, device, now_ms)

    @classmethod
    async def _add_device(
        cls, conn: Any, account_id: str, device: NewDevice, now_ms: int
    ) -> Device:
        """:meth:`add_device` inside the caller's transaction on ``conn``."""
        found = await conn.fetchval(
            "SELECT true FROM accounts WHERE account_id = $1 FOR NO KEY UPDATE", account_id
        )
        if found is None:
            raise NotFoundError(account_id)
        free = await conn.fetchval(
            _LOWEST_FREE_DEVICE_ID, account_id, PRIMARY_DEVICE_ID + 1, MAX_DEVICE_ID
        )
        if free is None:
            raise TooManyDevicesError(account_id)
        return await cls._insert_device(conn, account_id, int(free), device, now_ms)

    @staticmethod
    async def _insert_device(
        conn: Any, account_id: str, device_id: int, device: NewDevice, now_ms: int
    ) -> Device:
        await conn.execute(
            _INSERT_DEVICE,
            account_id,
            device_id,
            device.registration_id,
            device.credential_hash,
            device.name,
            now_ms,
        )
        return Device(
            account_id=account_id,
            device_id=device_id,
            registration_id=device.registration_id,
            credential_hash=device.credential_hash,
            name=device.name,
            created_ms=now_ms,
        )

    async def get_device(self, account_id: str, device_id: int) -> Device | None:
        """One device."""
        if not _valid_device_id(device_id):
            return None
        row = await self._db.fetchrow(
            _SELECT_DEVICE + " WHERE account_id = $1 AND device_id = $2",
            account_id,
            device_id,
        )
        return None if row is None else _device(row)

    async def list_devices(self, account_id: str) -> list[Device]:
        """The account's devices, by id."""
        rows = await self._db.fetch(
            _SELECT_DEVICE + " WHERE account_id = $1 ORDER BY device_id",
            account_id,
        )
        return [_device(row) for row in rows]

    async def remove_device(self, account_id: str, device_id: int) -> bool:
        """Remove a device; its keys go with it (ON DELETE CASCADE)."""
        if not _valid_device_id(device_id):
            return False
        deleted = await self._db.fetchval(
            "DELETE FROM devices WHERE account_id = $1 AND device_id = $2 RETURNING true",
            account_id,
            device_id,
        )
        return deleted is not None

    # --- keys ---------------------------------------------------------------------------------
    async def _write_keys(self, account_id: str, device_id: int, query: str, *args: Any) -> None:
        """Run one key upsert; a missing device (foreign key) becomes NotFoundError."""
        if not _valid_device_id(device_id):
            raise NotFoundError(account_id, device_id)
        try:
            await self._db.execute(query, account_id, device_id, *args)
        except asyncpg.ForeignKeyViolationError:
            raise NotFoundError(account_id, device_id) from None

    async def _require_device(self, account_id: str, device_id: int) -> None:
        if await self.get_device(account_id, device_id) is None:
            raise NotFoundError(account_id, device_id)

    async def set_signed_prekey(self, account_id: str, device_id: int, key: SignedPreKey) -> None:
        """Replace the device's signed prekey."""
        await self._write_keys(
            account_id,
            device_id,
            "INSERT INTO signed_prekeys (account_id, device_id, key_id, public_key, signature)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, device_id) DO UPDATE"
            " SET key_id = EXCLUDED.key_id, public_key = EXCLUDED.public_key,"
            " signature = EXCLUDED.signature",
            key.key_id,
            key.public_key,
            key.signature,
        )

    async def set_last_resort_kyber(
        self, account_id: str, device_id: int, key: KyberPreKey
    ) -> None:
        """Replace the device's last-resort Kyber prekey."""
        await self._write_keys(
            account_id,
            device_id,
            "INSERT INTO kyber_prekeys"
            " (account_id, device_id, key_id, public_key, signature, last_resort)"
            " VALUES ($1, $2, $3, $4, $5, true)"
            " ON CONFLICT (account_id, device_id) WHERE last_resort DO UPDATE"
            " SET key_id = EXCLUDED.key_id, public_key = EXCLUDED.public_key,"
            " signature = EXCLUDED.signature",
            key.key_id,
            key.public_key,
            key.signature,
        )

    async def add_one_time_prekeys(
        self, account_id: str, device_id: int, keys: Sequence[OneTimePreKey]
    ) -> None:
        """Add one-time EC prekeys (a key id already present, or repeated, is replaced)."""
        latest = {key.key_id: key for key in keys}  # one row per id: ON CONFLICT needs it
        if not latest:
            await self._require_device(account_id, device_id)
            return
        await self._write_keys(
            account_id,
            device_id,
            "INSERT INTO one_time_prekeys (account_id, device_id, key_id, public_key)"
            " SELECT $1, $2, k, p FROM unnest($3::bigint[], $4::bytea[]) AS u(k, p)"
            " ON CONFLICT (account_id, device_id, key_id) DO UPDATE"
            " SET public_key = EXCLUDED.public_key",
            list(latest),
            [key.public_key for key in latest.values()],
        )

    async def add_kyber_prekeys(
        self, account_id: str, device_id: int, keys: Sequence[KyberPreKey]
    ) -> None:
        """Add one-time Kyber prekeys (a key id already present, or repeated, is replaced)."""
        latest = {key.key_id: key for key in keys}
        if not latest:
            await self._require_device(account_id, device_id)
            return
        await self._write_keys(
            account_id,
            device_id,
            "INSERT INTO kyber_prekeys"
            " (account_id, device_id, key_id, public_key, signature, last_resort)"
            " SELECT $1, $2, k, p, s, false"
            " FROM unnest($3::bigint[], $4::bytea[], $5::bytea[]) AS u(k, p, s)"
            " ON CONFLICT (account_id, device_id, key_id) WHERE NOT last_resort DO UPDATE"
            " SET public_key = EXCLUDED.public_key, signature = EXCLUDED.signature",
            list(latest),
            [key.public_key for key in latest.values()],
            [key.signature for key in latest.values()],
        )

    async def prekey_counts(self, account_id: str, device_id: int) -> PreKeyCounts:
        """Unused one-time keys left (last-resort key not counted; zeros for no device)."""
        if not _valid_device_id(device_id):
            return PreKeyCounts(one_time_ec=0, one_time_kyber=0)
        row = await self._db.fetchrow(
            "SELECT"
            " (SELECT count(*) FROM one_time_prekeys WHERE account_id = $1 AND device_id = $2)"
            " AS ec,"
            " (SELECT count(*) FROM kyber_prekeys"
            "  WHERE account_id = $1 AND device_id = $2 AND NOT last_resort) AS kyber",
            account_id,
            device_id,
        )
        return PreKeyCounts(one_time_ec=int(row["ec"]), one_time_kyber=int(row["kyber"]))

    async def take_bundle(self, account_id: str, device_id: int) -> DeviceBundle | None:
        """A bundle for one device, consuming its lowest-id one-time keys atomically."""
        if not _valid_device_id(device_id):
            return None
        row = await self._db.fetchrow(_TAKE_BUNDLE, account_id, device_id)
        return None if row is None else _bundle(device_id, row)

    # --- messages -------------------------------------------------------------------------------
    # Sends and acks go through group commit (postgres_batch): concurrent calls in this process
    # share one transaction, hence one COMMIT and one WAL flush; each caller gets its own
    # answer after that COMMIT.
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
        """Store one message for the checked device set (see :mod:`.postgres_messages`)."""
        return await self._stores.submit(
            StoreRequest(
                sender_account_id,
                sender_device_id,
                recipient_account_id,
                envelopes,
                idempotency_key,
                now_ms,
                max_queue,
            )
        )

    async def _store_batch(self, requests: list[StoreRequest]) -> list[StoreOutcome | Exception]:
        async with self._db.acquire() as conn:
            return await postgres_messages.store_batch(conn, requests)

    async def fetch_envelopes(
        self, account_id: str, device_id: int, after_id: int, limit: int
    ) -> list[Envelope]:
        """Up to ``limit`` queued envelopes of one device with id > ``after_id``, in id order.

        Concurrent reads (many devices woken at once) share one statement."""
        return await self._reads.submit((account_id, device_id, after_id, limit))

    async def _fetch_batch(self, requests: list[FetchRequest]) -> list[list[Envelope]]:
        async with self._db.acquire() as conn:
            return await postgres_messages.fetch_batch(conn, requests)

    async def ack_envelopes(self, account_id: str, device_id: int, ids: Sequence[int]) -> int:
        """Delete these envelopes from this device's queue (others' are untouched); count."""
        if not ids or not _valid_device_id(device_id):
            return 0
        return await self._acks.submit((account_id, device_id, ids))

    async def _ack_batch(self, requests: list[AckRequest]) -> list[int]:
        async with self._db.acquire() as conn:
            return await postgres_messages.ack_batch(conn, requests)

    async def queue_depth(self, account_id: str, device_id: int) -> int:
        """How many envelopes the device's queue holds."""
        async with self._db.acquire() as conn:
            return await postgres_messages.queue_depth(conn, account_id, device_id)

    async def purge_idempotency(self, older_than_ms: int) -> int:
        """Forget idempotency answers recorded before ``older_than_ms``; count removed."""
        async with self._db.acquire() as conn:
            return await postgres_messages.purge_idempotency(conn, older_than_ms)

    async def expire_envelopes(self, older_than_ms: int) -> int:
        """Delete envelopes stored before ``older_than_ms``, :data:`EXPIRE_BATCH` per
        transaction; how many."""
        total = 0
        while True:
            n = await postgres_messages.expire_envelopes(self._db, older_than_ms, EXPIRE_BATCH)
            total += n
            if n < EXPIRE_BATCH:
                return total

    # --- social graph (see postgres_social) -----------------------------------------------------
    async def follow(self, follower: str, followee: str, now_ms: int) -> bool:
        """``follower`` follows ``followee``; False if unknown or blocking the follower."""
        try:
            return await postgres_social.follow(self._db, follower, followee, now_ms)
        except asyncpg.ForeignKeyViolationError:  # the follower's account is gone
            raise NotFoundError(follower) from None

    async def unfollow(self, follower: str, followee: str) -> bool:
        """Stop following."""
        return await postgres_social.unfollow(self._db, follower, followee)

    async def following(self, account_id: str) -> list[LinkedAccount]:
        """The accounts ``account_id`` follows."""
        return await postgres_social.listed(self._db, "following", account_id)

    async def followers(self, account_id: str) -> list[LinkedAccount]:
        """The accounts that follow ``account_id``."""
        return await postgres_social.listed(self._db, "followers", account_id)

    async def accept_chat(self, owner: str, peer: str, now_ms: int) -> bool:
        """``owner`` accepts ``peer``'s messages; False if ``peer`` is unknown."""
        try:
            return await postgres_social.accept_chat(self._db, owner, peer, now_ms)
        except asyncpg.ForeignKeyViolationError:
            raise NotFoundError(owner) from None

    async def decline_chat(self, owner: str, peer: str) -> bool:
        """Remove chats(owner, peer)."""
        return await postgres_social.decline_chat(self._db, owner, peer)

    async def block(self, blocker: str, blocked: str, now_ms: int) -> int | None:
        """Block, drop the blocked account's queued envelopes, remove follows (one statement)."""
        try:
            return await postgres_social.block(self._db, blocker, blocked, now_ms)
        except asyncpg.ForeignKeyViolationError:
            raise NotFoundError(blocker) from None

    async def unblock(self, blocker: str, blocked: str) -> bool:
        """Remove a block."""
        return await postgres_social.unblock(self._db, blocker, blocked)

    async def blocked_accounts(self, account_id: str) -> list[LinkedAccount]:
        """The accounts ``account_id`` blocks."""
        return await postgres_social.listed(self._db, "blocks", account_id)

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        """Whether ``blocker`` blocks ``blocked``."""
        return await postgres_social.is_blocked(self._db, blocker, blocked)

    async def relation(self, account_id: str, other: str) -> Relation | None:
        """Follows, chats and block between the two; None if ``other`` is unknown."""
        return await postgres_social.relation(self._db, account_id, other)

    # --- provisioning (see postgres_provisioning) -----------------------------------------------
    async def create_provisioning(
        self, provisioning_id: str, token_hash: bytes, now_ms: int, expires_ms: int
    ) -> None:
        """Open an empty provisioning mailbox."""
        await postgres_provisioning.create(
            self._db, provisioning_id, token_hash, now_ms, expires_ms
        )

    async def get_provisioning(self, provisioning_id: str) -> Provisioning | None:
        """The mailbox, expired or not."""
        return await postgres_provisioning.get(self._db, provisioning_id)

    async def put_provisioning_message(
        self, provisioning_id: str, message: bytes, now_ms: int
    ) -> PutOutcome:
        """Store the message in a live, empty mailbox."""
        return await postgres_provisioning.put_message(self._db, provisioning_id, message, now_ms)

    async def take_provisioning_message(self, provisioning_id: str, now_ms: int) -> bytes | None:
        """Delete a live mailbox holding a message; the message."""
        return await postgres_provisioning.take_message(self._db, provisioning_id, now_ms)

    async def delete_provisioning(self, provisioning_id: str) -> bool:
        """Delete a mailbox."""
        return await postgres_provisioning.delete(self._db, provisioning_id)

    async def add_provisioning_code(
        self, code_hash: bytes, account_id: str, now_ms: int, expires_ms: int
    ) -> None:
        """Record a linking code's hash."""
        await postgres_provisioning.add_code(self._db, code_hash, account_id, now_ms, expires_ms)

    async def link_device(
        self, account_id: str, code_hash: bytes, device: NewDevice, now_ms: int
    ) -> Device | None:
        """Consume the code and add the device in one transaction.

        The code's ``DELETE`` locks its row: a concurrent link with the same code waits, then
        deletes nothing. An expired code is deleted and the deletion committed.
        """
        async with self._db.acquire() as conn, conn.transaction():
            if not await postgres_provisioning.consume_code(conn, account_id, code_hash, now_ms):
                return None
            return await self._add_device(conn, account_id, device, now_ms)

    async def purge_provisioning(self, now_ms: int) -> int:
        """Delete expired mailboxes and codes."""
        return await postgres_provisioning.purge(self._db, now_ms)

    # --- attachment metadata (see postgres_attachments) -----------------------------------------
    async def add_attachment(
        self, attachment_id: str, account_id: str, now_ms: int, deadline_ms: int
    ) -> None:
        """Record an upload that is starting."""
        await postgres_attachments.add(self._db, attachment_id, account_id, now_ms, deadline_ms)

    async def finish_attachment(
        self, attachment_id: str, size: int, sha256: bytes, now_ms: int, expires_ms: int
    ) -> bool:
        """Mark a live, incomplete upload complete."""
        return await postgres_attachments.finish(
            self._db, attachment_id, size, sha256, now_ms, expires_ms
        )

    async def get_attachment(self, attachment_id: str) -> Attachment | None:
        """The metadata row."""
        return await postgres_attachments.get(self._db, attachment_id)

    async def expire_attachment(self, attachment_id: str, account_id: str, now_ms: int) -> bool:
        """Make the owner's live, complete attachment expired now."""
        return await postgres_attachments.expire(self._db, attachment_id, account_id, now_ms)

    async def expired_attachments(self, now_ms: int, limit: int) -> list[str]:
        """Ids of up to ``limit`` expired attachments."""
        return await postgres_attachments.expired(self._db, now_ms, limit)

    async def remove_attachments(self, attachment_ids: Sequence[str]) -> int:
        """Delete these metadata rows (and their chunks)."""
        return await postgres_attachments.remove(self._db, attachment_ids)
