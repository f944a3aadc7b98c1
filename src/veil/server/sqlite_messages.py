"""The message queues of the SQLite repository: the SQL work run on the database thread.

Every function here takes the connection and does no ``BEGIN``/``COMMIT`` of its own: the
repository wraps one call in one transaction, and a group commit may run several
:func:`store_message` bodies inside one transaction. :func:`store_message` makes all its checks
before its first write, so a body that raises (:class:`NotFoundError`,
:class:`QueueFullError`, :class:`ValueError`) has written nothing; only an unexpected database
error can leave a body half done (a group commit that wants to survive those should give each
body a ``SAVEPOINT``).

The send rule (``veil/wire/social.py``): for a send from A to another account B, if B blocks
A nothing is stored for B's devices, yet ids are reserved and answered for them as for any
send (:func:`_reserve_and_insert`), so A cannot tell; otherwise B's copies are message
requests unless ``chats(owner=B, peer=A)`` exists or A and B follow each other. Every send
from A to B records ``chats(owner=A, peer=B)``. Copies for A's own devices are never requests.

Schema: ``migrations/sqlite/0002_messages.sql`` and ``0006_social.sql``.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import Final

from veil.server.model import DeviceMismatch, Envelope, OutgoingEnvelope, StoredMessage
from veil.server.repository import NotFoundError, QueueFullError

# SQLite >= 3.32 allows 32766 host parameters per statement; stay far below it.
ACK_CHUNK: Final = 500

_IDEMPOTENCY_LOOKUP: Final = (
    "SELECT server_ms, answer FROM idempotency WHERE sender_account_id = ? AND idem_key = ?"
)
_IDEMPOTENCY_INSERT: Final = (
    "INSERT INTO idempotency (sender_account_id, idem_key, created_ms, server_ms, answer)"
    " VALUES (?, ?, ?, ?, ?)"
)
# The devices of the recipient (?2) and the sender (?1), and on every row the same three
# social facts of a send from ?1 to ?2 (uncorrelated subqueries: evaluated once): ?2 blocks
# ?1; ?2 accepts ?1's messages (a chat, or a mutual follow); ?1 already accepts ?2's.
_DEVICES_OF_TWO: Final = (
    "SELECT account_id, device_id, registration_id, queue_depth,"
    " EXISTS (SELECT 1 FROM blocks WHERE blocker = ?2 AND blocked = ?1),"
    " EXISTS (SELECT 1 FROM chats WHERE owner = ?2 AND peer = ?1)"
    " OR (EXISTS (SELECT 1 FROM follows WHERE follower = ?1 AND followee = ?2)"
    " AND EXISTS (SELECT 1 FROM follows WHERE follower = ?2 AND followee = ?1)),"
    " EXISTS (SELECT 1 FROM chats WHERE owner = ?1 AND peer = ?2)"
    " FROM devices WHERE account_id IN (?2, ?1)"
)
_ACCOUNT_EXISTS: Final = "SELECT 1 FROM accounts WHERE account_id = ?"
# devices.queue_depth is kept by triggers on envelopes (0002_messages.sql).
_DEPTH: Final = "SELECT queue_depth FROM devices WHERE account_id = ? AND device_id = ?"
_INSERT_ENVELOPE: Final = (
    "INSERT INTO envelopes (account_id, device_id, sender_account_id, sender_device_id,"
    " server_ms, type, content, franking_tag, reporting_tag, franking_key_id, request)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ENVELOPE_WITH_ID: Final = (
    "INSERT INTO envelopes (account_id, device_id, sender_account_id, sender_device_id,"
    " server_ms, type, content, franking_tag, reporting_tag, franking_key_id, request,"
    " envelope_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ACCEPT: Final = "INSERT OR IGNORE INTO chats (owner, peer, created_ms) VALUES (?, ?, ?)"
# The last id AUTOINCREMENT handed out (the next is one more); no row before the first insert.
_LAST_ID: Final = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'envelopes'), 0),"
    " coalesce((SELECT max(envelope_id) FROM envelopes), 0))"
)
_SEQUENCE_ROW: Final = (
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'envelopes', 0"
    " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'envelopes')"
)
_SEQUENCE_SET: Final = "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'envelopes'"
_FETCH: Final = (
    "SELECT envelope_id, account_id, device_id, sender_account_id, sender_device_id,"
    " server_ms, type, content, franking_tag, reporting_tag, franking_key_id, request"
    " FROM envelopes"
    " WHERE account_id = ? AND device_id = ? AND envelope_id > ?"
    " ORDER BY envelope_id LIMIT ?"
)


def store_message(
    conn: sqlite3.Connection,
    sender_account_id: str,
    sender_device_id: int,
    recipient_account_id: str,
    envelopes: Sequence[OutgoingEnvelope],
    idempotency_key: str | None,
    now_ms: int,
    max_queue: int,
) -> StoredMessage | list[DeviceMismatch]:
    """``Repository.store_message`` without the transaction (see the module docstring).

    Also raises :class:`NotFoundError` if the sending device does not exist (any more), and
    :class:`ValueError` if two envelopes target the same device.
    """
    sender, recipient = sender_account_id, recipient_account_id
    if idempotency_key is not None:
        row = conn.execute(_IDEMPOTENCY_LOOKUP, (sender, idempotency_key)).fetchone()
        if row is not None:
            return StoredMessage(row[0], _decode_answer(row[1]), duplicate=True)

    current, depths, social = _expected_devices(conn, sender, sender_device_id, recipient)
    submitted: dict[str, dict[int, int]] = {}
    for envelope in envelopes:
        devices = submitted.setdefault(envelope.account_id, {})
        if envelope.device_id in devices:
            raise ValueError(f"two envelopes for {envelope.account_id}.{envelope.device_id}")
        devices[envelope.device_id] = envelope.registration_id

    mismatches = _mismatches(current, submitted, recipient)
    if mismatches:
        return mismatches

    for envelope in envelopes:  # every target is a current device now
        if depths[envelope.account_id, envelope.device_id] >= max_queue:
            raise QueueFullError(envelope.account_id, envelope.device_id)

    blocked, request = False, False
    if recipient != sender:
        blocked_row, accepted, accepting = social
        blocked, request = bool(blocked_row), not accepted
        if not accepting:  # A writing to B: A accepts B (written once per pair)
            conn.execute(_ACCEPT, (sender, recipient, now_ms))
    dropped: frozenset[tuple[str, int]] = frozenset()
    if blocked:
        dropped = frozenset(
            (e.account_id, e.device_id) for e in envelopes if e.account_id == recipient
        )
        ids = _reserve_and_insert(conn, sender, sender_device_id, envelopes, now_ms, dropped)
    else:
        ids = _insert(conn, sender, sender_device_id, envelopes, now_ms, recipient, request)
    if idempotency_key is not None:
        answer = _encode_answer(ids)
        conn.execute(_IDEMPOTENCY_INSERT, (sender, idempotency_key, now_ms, now_ms, answer))
    return StoredMessage(now_ms, ids, request=request and not blocked, dropped=dropped)


def _expected_devices(
    conn: sqlite3.Connection, sender: str, sender_device_id: int, recipient: str
) -> tuple[dict[str, dict[int, int]], dict[tuple[str, int], int], tuple[int, int, int]]:
    """Device id -> registration id that the recipient and the sender each expect; depths;
    the social facts of :data:`_DEVICES_OF_TWO` (blocked, accepted, accepting).

    The sender's account expects all its devices but the sending one; if recipient and
    sender are the same account, that one rule applies (there is one dict).
    """
    current: dict[str, dict[int, int]] = {recipient: {}, sender: {}}
    depths: dict[tuple[str, int], int] = {}
    social = (0, 0, 0)
    for account_id, device_id, registration_id, depth, *facts in conn.execute(
        _DEVICES_OF_TWO, (sender, recipient)
    ):
        current[account_id][device_id] = registration_id
        depths[account_id, device_id] = depth
        social = (facts[0], facts[1], facts[2])
    if current[sender].pop(sender_device_id, None) is None:
        raise NotFoundError(f"no sending device {sender_device_id} of account {sender!r}")
    recipient_unknown = not current[recipient] and recipient != sender
    if recipient_unknown and conn.execute(_ACCOUNT_EXISTS, (recipient,)).fetchone() is None:
        raise NotFoundError(f"no account {recipient!r}")
    return current, depths, social


def _row(
    e: OutgoingEnvelope, sender: str, sender_device_id: int, now_ms: int, request: bool
) -> tuple[object, ...]:
    """The :data:`_INSERT_ENVELOPE` parameters of one copy."""
    return (
        e.account_id,
        e.device_id,
        sender,
        sender_device_id,
        now_ms,
        e.type,
        e.content,
        e.franking_tag or b"",
        e.reporting_tag or b"",
        e.franking_key_id,
        int(request),
    )


def _insert(
    conn: sqlite3.Connection,
    sender: str,
    sender_device_id: int,
    envelopes: Sequence[OutgoingEnvelope],
    now_ms: int,
    recipient: str,
    request: bool,
) -> dict[tuple[str, int], int]:
    """Insert the envelopes (the recipient's copies with ``request``); their ids by target."""
    if not envelopes:
        return {}
    rows = [
        _row(e, sender, sender_device_id, now_ms, request and e.account_id == recipient)
        for e in envelopes
    ]
    conn.executemany(_INSERT_ENVELOPE, rows)
    # AUTOINCREMENT gives consecutive ids to consecutive inserts of one writer (we hold the
    # write lock and no trigger inserts envelopes), so the batch's ids end at the last one.
    last: int = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    first = last - len(rows) + 1
    return {(e.account_id, e.device_id): first + i for i, e in enumerate(envelopes)}


def _reserve_and_insert(
    conn: sqlite3.Connection,
    sender: str,
    sender_device_id: int,
    envelopes: Sequence[OutgoingEnvelope],
    now_ms: int,
    dropped: frozenset[tuple[str, int]],
) -> dict[tuple[str, int], int]:
    """Give every envelope the id an ordinary send would (consecutive, in submission order),
    insert only those not ``dropped``, and move the ``AUTOINCREMENT`` counter past them all,
    so the dropped ids are never handed out again and the answer looks like any other."""
    if not envelopes:
        return {}
    first = int(conn.execute(_LAST_ID).fetchone()[0]) + 1
    ids = {(e.account_id, e.device_id): first + i for i, e in enumerate(envelopes)}
    rows = [
        (*_row(e, sender, sender_device_id, now_ms, False), ids[e.account_id, e.device_id])
        for e in envelopes
        if (e.account_id, e.device_id) not in dropped
    ]
    conn.executemany(_INSERT_ENVELOPE_WITH_ID, rows)
    conn.execute(_SEQUENCE_ROW)
    conn.execute(_SEQUENCE_SET, (first + len(envelopes) - 1,))
    return ids


def _mismatches(
    current: dict[str, dict[int, int]],
    submitted: dict[str, dict[int, int]],
    recipient: str,
) -> list[DeviceMismatch]:
    """Differences per account, by account id (the sender's only if it was targeted)."""
    checked = {recipient, *submitted}
    found: list[DeviceMismatch] = []
    for account_id in sorted(checked):
        expected = current.get(account_id, {})  # a third account expects nothing
        given = submitted.get(account_id, {})
        if given == expected:
            continue
        found.append(
            DeviceMismatch(
                account_id,
                missing=tuple(sorted(expected.keys() - given.keys())),
                extra=tuple(sorted(given.keys() - expected.keys())),
                stale=tuple(
                    sorted(d for d, reg in given.items() if d in expected and expected[d] != reg)
                ),
            )
        )
    return found


def _encode_answer(envelope_ids: dict[tuple[str, int], int]) -> bytes:
    answer = [[account_id, device_id, i] for (account_id, device_id), i in envelope_ids.items()]
    return json.dumps(answer, separators=(",", ":")).encode()


def _decode_answer(answer: bytes) -> dict[tuple[str, int], int]:
    return {(account_id, device_id): i for account_id, device_id, i in json.loads(answer)}


def fetch_envelopes(
    conn: sqlite3.Connection, account_id: str, device_id: int, after_id: int, limit: int
) -> list[Envelope]:
    """Up to ``limit`` envelopes of one queue with id > ``after_id``, in id order."""
    rows = conn.execute(_FETCH, (account_id, device_id, after_id, limit)).fetchall()
    return [_envelope(*row) for row in rows]


def _envelope(
    envelope_id: int,
    account_id: str,
    device_id: int,
    sender_account_id: str,
    sender_device_id: int,
    server_ms: int,
    type_: int,
    content: bytes,
    franking_tag: bytes,
    reporting_tag: bytes,
    franking_key_id: int,
    request: int,
) -> Envelope:
    """An :data:`_FETCH` row (``request`` is stored as 0 or 1)."""
    return Envelope(
        envelope_id,
        account_id,
        device_id,
        sender_account_id,
        sender_device_id,
        server_ms,
        type_,
        content,
        franking_tag,
        reporting_tag,
        franking_key_id,
        bool(request),
    )


def ack_envelopes(
    conn: sqlite3.Connection, account_id: str, device_id: int, ids: Sequence[int]
) -> int:
    """Delete these envelopes of this queue only; how many were deleted."""
    unique = list(dict.fromkeys(ids))
    deleted = 0
    for start in range(0, len(unique), ACK_CHUNK):
        chunk = unique[start : start + ACK_CHUNK]
        sql = _ack_sql(len(chunk))
        deleted += conn.execute(sql, (account_id, device_id, *chunk)).rowcount
    return deleted


@functools.lru_cache(maxsize=64)
def _ack_sql(count: int) -> str:
    marks = ",".join("?" * count)  # only "?" marks are formatted in
    sql = "DELETE FROM envelopes WHERE account_id = ? AND device_id = ? AND envelope_id IN ({})"
    return sql.format(marks)


def queue_depth(conn: sqlite3.Connection, account_id: str, device_id: int) -> int:
    """How many envelopes the queue holds (0 for an unknown device)."""
    row = conn.execute(_DEPTH, (account_id, device_id)).fetchone()
    return 0 if row is None else int(row[0])


def purge_idempotency(conn: sqlite3.Connection, older_than_ms: int) -> int:
    """Forget the idempotency answers recorded before ``older_than_ms``; how many."""
    sql = "DELETE FROM idempotency WHERE created_ms < ?"
    return conn.execute(sql, (older_than_ms,)).rowcount


# Ids grow with time, so the oldest envelopes are the first rows in id order: look at the
# first ``limit`` rows only (no index on server_ms to keep up on every insert), delete the old.
_EXPIRE: Final = (
    "DELETE FROM envelopes WHERE envelope_id IN (SELECT envelope_id FROM ("
    " SELECT envelope_id, server_ms FROM envelopes ORDER BY envelope_id LIMIT ?)"
    " WHERE server_ms < ?)"
)


def expire_envelopes(conn: sqlite3.Connection, older_than_ms: int, limit: int) -> int:
    """Delete the envelopes stored before ``older_than_ms`` among the ``limit`` oldest (by id,
    which grows with time); how many. Fewer than ``limit`` means the old ones are gone."""
    return conn.execute(_EXPIRE, (limit, older_than_ms)).rowcount
