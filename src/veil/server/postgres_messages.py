"""The message store of :class:`veil.server.postgres_repo.PostgresRepository` (asyncpg).

Functions take an asyncpg connection (or pool); the repository methods call them.

:func:`store_message` is one SQL statement, hence one round trip and one atomic, durably
committed transaction (``synchronous_commit`` as configured). Inside it, in this order:

* the earlier answer under the idempotency key, if one is visible, wins and nothing else runs;
* the checked accounts' rows (the recipient, and the sender when any envelope targets it) and
  then their devices are locked ``FOR KEY SHARE``: a concurrent ``remove_device`` or
  ``delete_account`` either waits for this send (and its cascade then drops the new envelopes)
  or has committed, and the locking read skips the deleted rows (the send sees a mismatch or
  an unknown recipient). ``add_device`` is not blocked (its ``FOR NO KEY UPDATE`` does not
  conflict): a device it commits after this statement's snapshot did not exist for this send,
  which is equivalent to the send happening first. Accounts are locked before devices, in id
  order, like a deletion, so no lock cycle forms with it;
* the submitted ``(account, device, registration id)`` set is compared with the expected one,
  and each target queue is counted (up to ``max_queue`` rows);
* if everything holds, envelope ids are drawn from the sequence, the idempotency row is
  inserted with ``ON CONFLICT DO NOTHING``, and the envelopes are inserted only if that row was
  (or no key was given);
* the send rule (``veil/wire/social.py``), for a recipient B other than the sender A: if B
  blocks A, B's copies are not inserted, though their ids were drawn and are answered (and
  recorded in the idempotency row) like any others, so A cannot tell; otherwise B's copies
  are inserted with ``request`` unless ``chats(owner=B, peer=A)`` exists or A and B follow
  each other; and ``chats(owner=A, peer=B)`` is inserted when missing (A writing to B accepts
  B). The social tables are read without locks: a block committed while a send is running may
  miss that send's envelopes (the send counts as made just before the block).

Two concurrent sends with one key: the second one's idempotency insert waits for the first
transaction; when that commits, the insert does nothing, so the second stores nothing and
re-reads the first answer in a second statement (a fresh snapshot) and returns it as a
duplicate. If the first aborts, the second's insert proceeds and it stores its own copy.
The queue limit is checked without serializing senders, so concurrent sends to one device
may together overshoot ``max_queue`` by a few envelopes.

Group commit (the repository batches concurrent calls with :mod:`veil.server.postgres_batch`):
:func:`store_batch` runs the :data:`_STORE` statements of several sends in ONE transaction,
pipelined in one round trip, with one ``COMMIT`` (one WAL flush) for all of them; each statement
still does everything above for its own send, in its own snapshot, which sees the batch's
earlier statements (so a second send with one key in a batch is a duplicate of the first, and
queue counts include the batch's earlier envelopes). The locks are held until the batch's
``COMMIT``. A send's outcome is returned only after that ``COMMIT``; if PostgreSQL refuses the
batch (a statement's error, a deadlock, a failed ``COMMIT``), nothing of it is stored and each
send is run again (a deadlock: the batch; otherwise each send alone, so that one failing send
fails only itself). :func:`ack_batch` deletes the acks of several devices in one statement,
each from its own device's queue only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from veil.server.model import (
    MAX_DEVICE_ID,
    MIN_DEVICE_ID,
    DeviceMismatch,
    Envelope,
    OutgoingEnvelope,
    StoredMessage,
)
from veil.server.repository import NotFoundError, QueueFullError

__all__ = [
    "AckRequest",
    "StoreOutcome",
    "StoreRequest",
    "ack_batch",
    "ack_envelopes",
    "expire_envelopes",
    "fetch_envelopes",
    "purge_idempotency",
    "queue_depth",
    "store_batch",
    "store_message",
]

#: How often a send is retried after a deadlock or a vanished idempotency answer.
_ATTEMPTS: Final = 3

# $1 sender account, $2 sender device, $3 recipient, $4..$8 the envelopes as parallel arrays
# (account, device, registration id, type, content), $9 idempotency key (or NULL), $10 now,
# $11 max_queue, $12..$14 more parallel arrays (franking tag, reporting tag, franking key id).
# Non-data-modifying CTEs run only when (and once) referenced; the scalar
# subqueries are InitPlans, evaluated before the scans that use them, so ``acc`` locks the
# accounts before ``cur`` locks their devices.
_STORE: Final = """
WITH sub AS (
    SELECT u.a, u.d, u.r, u.t, u.c, u.ft, u.rt, u.k
    FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::int[], $8::bytea[],
                $12::bytea[], $13::bytea[], $14::int[])
        AS u(a, d, r, t, c, ft, rt, k)
), prev AS (
    SELECT server_ms, account_ids, device_ids, envelope_ids FROM idempotency
    WHERE $9::text IS NOT NULL AND sender_account_id = $1::text AND idem_key = $9::text
), acc AS (
    SELECT account_id FROM accounts
    WHERE account_id = ANY (ARRAY[
            $3::text,
            CASE WHEN EXISTS (SELECT FROM sub WHERE a = $1::text) THEN $1::text END])
      AND NOT EXISTS (SELECT FROM prev)
    ORDER BY account_id
    FOR KEY SHARE
), cur AS (
    SELECT account_id AS a, device_id::bigint AS d, registration_id AS r FROM devices
    WHERE account_id = ANY ((SELECT array_agg(account_id) FROM acc)::text[])
      AND NOT (account_id = $1::text AND device_id = $2::int)
    ORDER BY account_id, device_id
    FOR KEY SHARE
), verdict AS (
    SELECT EXISTS (SELECT FROM prev) AS dup,
           EXISTS (SELECT FROM acc WHERE account_id = $3::text) AS found,
           NOT EXISTS (
               SELECT FROM sub FULL JOIN cur ON sub.a = cur.a AND sub.d = cur.d AND sub.r = cur.r
               WHERE sub.a IS NULL OR cur.a IS NULL) AS match
), full_queue AS (
    SELECT a, d FROM sub
    WHERE (SELECT count(*) FROM (
              SELECT FROM envelopes AS e WHERE e.account_id = sub.a AND e.device_id = sub.d
              LIMIT $11::int) AS q) >= $11::int
    ORDER BY a, d
    LIMIT 1
), ok AS (
    SELECT NOT dup AND found AND match AND NOT EXISTS (SELECT FROM full_queue) AS ok
    FROM verdict
), soc AS (
    SELECT $3::text <> $1::text
           AND EXISTS (SELECT FROM blocks WHERE blocker = $3::text AND blocked = $1::text)
               AS blocked,
           $3::text <> $1::text
           AND NOT EXISTS (SELECT FROM chats WHERE owner = $3::text AND peer = $1::text)
           AND NOT (
               EXISTS (SELECT FROM follows WHERE follower = $1::text AND followee = $3::text)
               AND EXISTS (SELECT FROM follows WHERE follower = $3::text AND followee = $1::text))
               AS request
), ids AS (
    SELECT nextval('envelopes_envelope_id_seq') AS id, a, d, t, c, ft, rt, k FROM sub
    WHERE (SELECT ok FROM ok)
), idem AS (
    INSERT INTO idempotency (sender_account_id, idem_key, created_ms, server_ms,
                             account_ids, device_ids, envelope_ids)
    SELECT $1::text, $9::text, $10::bigint, $10::bigint,
           coalesce(array_agg(a ORDER BY id), '{}'),
           coalesce(array_agg(d::smallint ORDER BY id), '{}'),
           coalesce(array_agg(id ORDER BY id), '{}')
    FROM ids
    HAVING $9::text IS NOT NULL AND (SELECT ok FROM ok)
    ON CONFLICT (sender_account_id, idem_key) DO NOTHING
    RETURNING true
), env AS (
    INSERT INTO envelopes (envelope_id, account_id, device_id, sender_account_id,
                           sender_device_id, server_ms, type, content, franking_tag,
                           reporting_tag, franking_key_id, request)
    SELECT id, a, d::smallint, $1::text, $2::int, $10::bigint, t, c, ft, rt, k,
           a = $3::text AND (SELECT request FROM soc)
    FROM ids
    WHERE ($9::text IS NULL OR EXISTS (SELECT FROM idem))
      AND NOT (a = $3::text AND (SELECT blocked FROM soc))
    RETURNING envelope_id
), accept AS (
    INSERT INTO chats (owner, peer, created_ms)
    SELECT $1::text, $3::text, $10::bigint
    WHERE $3::text <> $1::text AND (SELECT ok FROM ok)
      AND ($9::text IS NULL OR EXISTS (SELECT FROM idem))
      AND NOT EXISTS (SELECT FROM chats WHERE owner = $1::text AND peer = $3::text)
    ON CONFLICT (owner, peer) DO NOTHING
)
SELECT v.dup, v.found, v.match, o.ok, s.blocked, s.request,
       EXISTS (SELECT FROM idem) AS idem_inserted,
       (SELECT count(*) FROM env) AS stored,
       f.a AS full_a, f.d AS full_d,
       p.server_ms AS prev_ms, p.account_ids AS prev_accounts, p.device_ids AS prev_devices,
       p.envelope_ids AS prev_ids,
       i.accounts AS new_accounts, i.devices AS new_devices, i.ids AS new_ids,
       c.accounts AS cur_accounts, c.devices AS cur_devices, c.regs AS cur_regs
FROM verdict AS v
CROSS JOIN ok AS o
CROSS JOIN soc AS s
CROSS JOIN (SELECT array_agg(a) AS accounts, array_agg(d) AS devices, array_agg(id) AS ids
            FROM ids) AS i
CROSS JOIN (SELECT array_agg(a) AS accounts, array_agg(d) AS devices, array_agg(r) AS regs
            FROM cur WHERE NOT (SELECT match FROM verdict)) AS c
LEFT JOIN prev AS p ON true
LEFT JOIN full_queue AS f ON v.match AND v.found"""

_SELECT_ANSWER: Final = (
    "SELECT server_ms, account_ids, device_ids, envelope_ids FROM idempotency"
    " WHERE sender_account_id = $1 AND idem_key = $2"
)


def _valid_device_id(device_id: int) -> bool:
    return MIN_DEVICE_ID <= device_id <= MAX_DEVICE_ID


def _answer(
    server_ms: Any, accounts: Any, devices: Any, ids: Any, *, duplicate: bool
) -> StoredMessage:
    return StoredMessage(
        server_ms=int(server_ms),
        envelope_ids={
            (str(a), int(d)): int(i)
            for a, d, i in zip(accounts or (), devices or (), ids or (), strict=True)
        },
        duplicate=duplicate,
    )


def _mismatches(
    sender_account_id: str,
    recipient_account_id: str,
    envelopes: Sequence[OutgoingEnvelope],
    row: Any,
) -> list[DeviceMismatch]:
    """The per-account differences, from the devices the statement found (and locked)."""
    checked = {recipient_account_id}
    if any(e.account_id == sender_account_id for e in envelopes):
        checked.add(sender_account_id)
    expected: dict[str, dict[int, int]] = {account: {} for account in checked}
    for a, d, r in zip(
        row["cur_accounts"] or (), row["cur_devices"] or (), row["cur_regs"] or (), strict=True
    ):
        expected[str(a)][int(d)] = int(r)
    submitted: dict[str, dict[int, int]] = {}
    for e in envelopes:
        submitted.setdefault(e.account_id, {})[e.device_id] = e.registration_id
    result = []
    for account in sorted(checked | submitted.keys()):
        sent = submitted.get(account, {})
        if account not in checked:
            result.append(DeviceMismatch(account, (), tuple(sorted(sent)), ()))
            continue
        have = expected[account]
        missing = tuple(sorted(have.keys() - sent.keys()))
        extra = tuple(sorted(sent.keys() - have.keys()))
        stale = tuple(sorted(d for d in sent.keys() & have.keys() if sent[d] != have[d]))
        if missing or extra or stale:
            result.append(DeviceMismatch(account, missing, extra, stale))
    return result


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """The arguments of one :meth:`~veil.server.repository.Repository.store_message` call."""

    sender_account_id: str
    sender_device_id: int
    recipient_account_id: str
    envelopes: Sequence[OutgoingEnvelope]
    idempotency_key: str | None
    now_ms: int
    max_queue: int


StoreOutcome = StoredMessage | list[DeviceMismatch]


def _store_args(req: StoreRequest) -> tuple[Any, ...]:
    """The parameters of :data:`_STORE`; :class:`ValueError` for two envelopes to one device."""
    envelopes = req.envelopes
    targets = {(e.account_id, e.device_id) for e in envelopes}
    if len(targets) != len(envelopes):
        raise ValueError("two envelopes target the same device")
    return (
        req.sender_account_id,
        req.sender_device_id,
        req.recipient_account_id,
        [e.account_id for e in envelopes],
        [e.device_id for e in envelopes],
        [e.registration_id for e in envelopes],
        [e.type for e in envelopes],
        [e.content for e in envelopes],
        req.idempotency_key,
        req.now_ms,
        req.max_queue,
        [e.franking_tag or b"" for e in envelopes],
        [e.reporting_tag or b"" for e in envelopes],
        [e.franking_key_id for e in envelopes],
    )


def _interpret(req: StoreRequest, row: Any) -> StoreOutcome | None:
    """The answer :data:`_STORE`'s row gives (or raises); None: a concurrent send with the key
    committed first, so its answer must be read in a new statement."""
    if row["dup"]:
        return _answer(
            row["prev_ms"],
            row["prev_accounts"],
            row["prev_devices"],
            row["prev_ids"],
            duplicate=True,
        )
    if not row["found"]:
        raise NotFoundError(req.recipient_account_id)
    if not row["match"]:
        mismatches = _mismatches(
            req.sender_account_id, req.recipient_account_id, req.envelopes, row
        )
        if not mismatches:  # pragma: no cover - the SQL and this function disagree
            raise RuntimeError("device check failed without a difference")
        return mismatches
    if row["full_a"] is not None:
        raise QueueFullError(str(row["full_a"]), int(row["full_d"]))
    if req.idempotency_key is None or row["idem_inserted"]:
        answer = _answer(
            req.now_ms, row["new_accounts"], row["new_devices"], row["new_ids"], duplicate=False
        )
        recipient = req.recipient_account_id
        if row["blocked"]:
            dropped = frozenset(t for t in answer.envelope_ids if t[0] == recipient)
            return dataclasses.replace(answer, dropped=dropped)
        return dataclasses.replace(answer, request=bool(row["request"]))
    return None


async def _first_answer(conn: Any, req: StoreRequest) -> StoredMessage | None:
    """The committed answer of the send that took ``req``'s idempotency key (None: purged)."""
    first = await conn.fetchrow(_SELECT_ANSWER, req.sender_account_id, req.idempotency_key)
    if first is None:
        return None
    return _answer(
        first["server_ms"],
        first["account_ids"],
        first["device_ids"],
        first["envelope_ids"],
        duplicate=True,
    )


async def store_message(
    conn: Any,
    sender_account_id: str,
    sender_device_id: int,
    recipient_account_id: str,
    envelopes: Sequence[OutgoingEnvelope],
    idempotency_key: str | None,
    now_ms: int,
    max_queue: int,
) -> StoreOutcome:
    """See :meth:`veil.server.repository.Repository.store_message` and the module docstring.

    Raises :class:`ValueError` if two envelopes target the same device.
    """
    req = StoreRequest(
        sender_account_id,
        sender_device_id,
        recipient_account_id,
        envelopes,
        idempotency_key,
        now_ms,
        max_queue,
    )
    return await _store_one(conn, req, _store_args(req))


async def _store_one(conn: Any, req: StoreRequest, args: tuple[Any, ...]) -> StoreOutcome:
    """:func:`store_message` in its own transaction (one statement, autocommit)."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            row = await conn.fetchrow(_STORE, *args)
        except asyncpg.DeadlockDetectedError:
            if attempt == _ATTEMPTS:
                raise
            continue
        except asyncpg.ForeignKeyViolationError:
            # only the sender's account can vanish under the statement's locks
            raise NotFoundError(req.sender_account_id) from None
        answer = _interpret(req, row)
        if answer is None:  # a concurrent send with this key committed first ...
            answer = await _first_answer(conn, req)
        if answer is not None:
            return answer
        # ... and was purged in between: try again.
    raise RuntimeError("store_message did not settle")  # pragma: no cover


async def store_batch(
    conn: Any, requests: Sequence[StoreRequest]
) -> list[StoreOutcome | Exception]:
    """Several sends in ONE transaction: one pipelined round trip, one ``COMMIT`` (fsync).

    The :data:`_STORE` statement of every send is bound and executed in one pipeline ending in
    a single ``Sync``, so PostgreSQL runs them, in order, in one implicit transaction that
    commits when the last one is done; each statement takes its own snapshot (READ COMMITTED),
    which includes the writes of the batch's earlier statements: a later send with the same
    idempotency key sees the earlier one's answer (a duplicate), and queue counts include the
    batch's earlier envelopes. Outcomes are returned only after that ``COMMIT``.

    If PostgreSQL reports an error (one statement failed, or the ``COMMIT`` did), the whole
    transaction was rolled back and nothing of the batch is stored: after a deadlock the batch
    is run again, otherwise each send is run again on its own, so that one failing send (e.g.
    its sender's account deleted under it) only fails itself. If the connection is lost, the
    ``COMMIT``'s fate is unknown: that error goes to every caller, and nothing is re-run.
    """
    outcomes: list[StoreOutcome | Exception] = []
    args: dict[int, tuple[Any, ...]] = {}
    for index, req in enumerate(requests):
        try:
            args[index] = _store_args(req)
        except ValueError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(_UNSETTLED)
    todo = list(args)
    rows = await _run_batch(conn, [args[i] for i in todo]) if len(todo) > 1 else None
    if rows is None:  # one send, or the batch failed: each in its own transaction
        for index in todo:
            try:
                outcomes[index] = await _store_one(conn, requests[index], args[index])
            except Exception as exc:
                outcomes[index] = exc
        return outcomes
    if len(rows) != len(todo):  # pragma: no cover - one row per statement
        raise RuntimeError("store batch: one row per send expected")
    for index, row in zip(todo, rows, strict=True):  # committed
        req = requests[index]
        try:
            answer = _interpret(req, row)
            if answer is None:  # the other send with this key has committed its answer too
                answer = await _first_answer(conn, req)
                if answer is None:  # ... which was purged in between: go alone
                    answer = await _store_one(conn, req, args[index])
            outcomes[index] = answer
        except Exception as exc:
            outcomes[index] = exc
    return outcomes


_UNSETTLED: Final = RuntimeError("store batch: no outcome")


async def _run_batch(conn: Any, args: list[tuple[Any, ...]]) -> list[Any] | None:
    """:data:`_STORE` for each of ``args`` in one pipelined transaction; its rows, or None if
    PostgreSQL refused it (nothing stored). Raises if the connection was lost."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return list(await conn.fetchmany(_STORE, args))
        except asyncpg.DeadlockDetectedError:
            if attempt == _ATTEMPTS:
                return None
        except asyncpg.PostgresError as exc:
            if conn.is_closed() or getattr(exc, "severity", None) in ("FATAL", "PANIC"):
                raise  # the session is gone (e.g. terminated): was the COMMIT done? Unknown.
            return None
    return None  # pragma: no cover


async def fetch_envelopes(
    conn: Any, account_id: str, device_id: int, after_id: int, limit: int
) -> list[Envelope]:
    """Up to ``limit`` envelopes of one device with id > ``after_id``, in id order."""
    if limit <= 0 or not _valid_device_id(device_id):
        return []
    rows = await conn.fetch(
        "SELECT envelope_id, sender_account_id, sender_device_id, server_ms, type, content,"
        " franking_tag, reporting_tag, franking_key_id, request"
        " FROM envelopes WHERE account_id = $1 AND device_id = $2 AND envelope_id > $3"
        " ORDER BY envelope_id LIMIT $4",
        account_id,
        device_id,
        after_id,
        limit,
    )
    return [_envelope(row, account_id, device_id) for row in rows]


def _envelope(row: Any, account_id: str, device_id: int) -> Envelope:
    return Envelope(
        envelope_id=int(row["envelope_id"]),
        account_id=account_id,
        device_id=device_id,
        sender_account_id=str(row["sender_account_id"]),
        sender_device_id=int(row["sender_device_id"]),
        server_ms=int(row["server_ms"]),
        type=int(row["type"]),
        content=bytes(row["content"]),
        franking_tag=bytes(row["franking_tag"]),
        reporting_tag=bytes(row["reporting_tag"]),
        franking_key_id=int(row["franking_key_id"]),
        request=bool(row["request"]),
    )


async def ack_envelopes(conn: Any, account_id: str, device_id: int, ids: Sequence[int]) -> int:
    """Delete these envelopes from this device's queue only; how many were deleted."""
    return (await ack_batch(conn, [(account_id, device_id, ids)]))[0]


AckRequest = tuple[str, int, Sequence[int]]
"""``(account id, device id, envelope ids)`` of one ack."""

_BIGINT_MIN: Final = -(2**63)
_BIGINT_MAX: Final = 2**63 - 1

# $1 the request index of each row, $2 account, $3 device, $4 envelope id (parallel arrays,
# sorted by envelope id). Every row deletes only from its own request's device queue.
_ACK_BATCH: Final = """
WITH req AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::smallint[], $4::bigint[]) AS r(k, a, d, id)
), del AS (
    DELETE FROM envelopes AS e USING req
    WHERE e.envelope_id = req.id AND e.account_id = req.a AND e.device_id = req.d
    RETURNING req.k
)
SELECT k, count(*) AS n FROM del GROUP BY k"""


async def ack_batch(conn: Any, requests: Sequence[AckRequest]) -> list[int]:
    """Several acks in one ``DELETE`` (one transaction); rows deleted per request.

    Each request deletes only from its own device's queue, as :func:`ack_envelopes` would. An
    id acked twice (in one request, or by two requests of one device) is deleted and counted
    once. Rows are deleted in envelope id order, so batches that overlap do not deadlock each
    other; a deadlock with anything else re-runs the statement (it is atomic).
    """
    rows_k: list[int] = []
    rows_a: list[str] = []
    rows_d: list[int] = []
    rows_id: list[int] = []
    flat: list[tuple[int, int, str, int]] = []
    for k, (account_id, device_id, ids) in enumerate(requests):
        if not _valid_device_id(device_id):
            continue
        flat.extend(
            (i, k, account_id, device_id)
            for i in dict.fromkeys(ids)
            if _BIGINT_MIN <= i <= _BIGINT_MAX  # no other id can be in the table
        )
    counts = [0] * len(requests)
    if not flat:
        return counts
    flat.sort()
    for i, k, account_id, device_id in flat:
        rows_id.append(i)
        rows_k.append(k)
        rows_a.append(account_id)
        rows_d.append(device_id)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            rows = await conn.fetch(_ACK_BATCH, rows_k, rows_a, rows_d, rows_id)
        except asyncpg.DeadlockDetectedError:
            if attempt == _ATTEMPTS:
                raise
            continue
        for row in rows:
            counts[int(row["k"])] = int(row["n"])
        return counts
    raise RuntimeError("ack_batch did not settle")  # pragma: no cover


async def queue_depth(conn: Any, account_id: str, device_id: int) -> int:
    """How many envelopes the device's queue holds."""
    if not _valid_device_id(device_id):
        return 0
    count = await conn.fetchval(
        "SELECT count(*) FROM envelopes WHERE account_id = $1 AND device_id = $2",
        account_id,
        device_id,
    )
    return int(count)


async def purge_idempotency(conn: Any, older_than_ms: int) -> int:
    """Forget idempotency answers created before ``older_than_ms``; how many."""
    status = await conn.execute("DELETE FROM idempotency WHERE created_ms < $1", older_than_ms)
    return int(status.rpartition(" ")[2])


FetchRequest = tuple[str, int, int, int]
"""``(account_id, device_id, after_id, limit)`` of one :func:`fetch_batch` read."""

_FETCH_MANY: Final = """
SELECT q.k, e.envelope_id, e.sender_account_id, e.sender_device_id, e.server_ms, e.type,
       e.content, e.franking_tag, e.reporting_tag, e.franking_key_id, e.request
FROM unnest($1::int[], $2::text[], $3::smallint[], $4::bigint[], $5::int[])
    AS q(k, a, d, after_id, lim)
CROSS JOIN LATERAL (
    SELECT envelope_id, sender_account_id, sender_device_id, server_ms, type, content,
           franking_tag, reporting_tag, franking_key_id, request
    FROM envelopes
    WHERE account_id = q.a AND device_id = q.d AND envelope_id > q.after_id
    ORDER BY envelope_id
    LIMIT q.lim
) AS e
ORDER BY q.k, e.envelope_id"""


async def fetch_batch(conn: Any, requests: Sequence[FetchRequest]) -> list[list[Envelope]]:
    """Several devices' queue reads (as :func:`fetch_envelopes`) in one statement and one
    round trip; one list per request, in order."""
    out: list[list[Envelope]] = [[] for _ in requests]
    keys, accounts, devices, afters, limits = [], [], [], [], []
    for k, (account_id, device_id, after_id, limit) in enumerate(requests):
        if limit > 0 and _valid_device_id(device_id):
            keys.append(k)
            accounts.append(account_id)
            devices.append(device_id)
            afters.append(after_id)
            limits.append(limit)
    if not keys:
        return out
    rows = await conn.fetch(_FETCH_MANY, keys, accounts, devices, afters, limits)
    for row in rows:
        k = int(row["k"])
        out[k].append(_envelope(row, requests[k][0], requests[k][1]))
    return out


# Ids grow with time, so the oldest envelopes are the first rows in id order: look at the
# first $2 rows only (no index on server_ms to keep up on every insert), delete the old ones.
_EXPIRE: Final = """
DELETE FROM envelopes WHERE envelope_id IN (
    SELECT envelope_id FROM (
        SELECT envelope_id, server_ms FROM envelopes ORDER BY envelope_id LIMIT $2
        FOR UPDATE SKIP LOCKED) AS head
    WHERE server_ms < $1)"""


async def expire_envelopes(conn: Any, older_than_ms: int, limit: int) -> int:
    """Delete the envelopes stored before ``older_than_ms`` among the ``limit`` oldest (by id,
    which grows with time); how many. Fewer than ``limit`` means the old ones are gone.

    ``SKIP LOCKED``: rows an ack is deleting right now are left to it (and two sweepers in two
    processes take different rows instead of waiting for each other).
    """
    status = await conn.execute(_EXPIRE, older_than_ms, limit)
    return int(status.rpartition(" ")[2])
