"""Write ``fixtures/device_v1.db``: a small device store at schema version 1 (and
``fixtures/device_v2.db`` at version 2).

Run from the repository root: ``python tests/store/make_fixture.py`` (``... v2`` for the
second). The database is built the way Veil's first schema version built it (``PRAGMA
application_id``, the statements of ``0001_init.sql``, ``PRAGMA user_version = 1``) with raw
SQL, not through :class:`veil.store.DeviceStore`, which always migrates to the newest version;
the version-2 file then gets the statements of ``0002_conversation_rules.sql``, ``PRAGMA
user_version = 2`` and :data:`ROWS_V2`. Later schema versions test their upgrade from these
committed files; neither is regenerated once a later migration exists (``test_migrations``
checks they still match their migrations). Small pages and ``VACUUM`` keep them a few KiB;
they are written in rollback-journal mode, so each is one file.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "device_v1.db"
FIXTURE_V2 = HERE / "fixtures" / "device_v2.db"
MIGRATIONS = HERE.parent.parent / "src" / "veil" / "store" / "migrations"
MIGRATION = MIGRATIONS / "0001_init.sql"
MIGRATION_2 = MIGRATIONS / "0002_conversation_rules.sql"
APPLICATION_ID = 0x5645494C

# Rows every later version must still read back (test_migrations checks them).
ROWS: list[tuple[str, tuple[object, ...]]] = [
    (
        "INSERT INTO account VALUES (1, 'https://veil.example', 'acc-alice', 2, 'cred-v1',"
        " 'Alice', ?, 777, 1700000000000)",
        (b"\x01" * 32,),
    ),
    ("UPDATE key_counters SET last_id = 3 WHERE kind = 'signed'", ()),
    ("UPDATE key_counters SET last_id = 7 WHERE kind = 'kyber'", ()),
    ("UPDATE key_counters SET last_id = 100 WHERE kind = 'one_time'", ()),
    ("INSERT INTO signed_prekeys VALUES (3, ?, 1700000000001)", (b"\x02" * 32,)),
    ("INSERT INTO kyber_prekeys VALUES (6, ?, 1, 1700000000002)", (b"\x03" * 64,)),
    ("INSERT INTO kyber_prekeys VALUES (7, ?, 0, 1700000000003)", (b"\x04" * 64,)),
    ("INSERT INTO one_time_prekeys VALUES (100, ?)", (b"\x05" * 32,)),
    ("INSERT INTO sessions VALUES ('acc-bob', 1, ?)", (b"session-v1",)),
    (
        "INSERT INTO identities VALUES ('acc-bob', ?, 'verified', 1700000000004, NULL)",
        (b"\x05" + b"\x06" * 32,),
    ),
    ("INSERT INTO contacts VALUES ('acc-bob', 'Bob', 'bob')", ()),
    (
        "INSERT INTO messages VALUES (1, 'acc-bob', ?, 'in', 'acc-bob', 1, 1700000001000,"
        " 1700000001100, 1700000001200, 1700000001100, 'hi alice', NULL, NULL, 'received')",
        (b"\x10" * 16,),
    ),
    (
        "INSERT INTO messages VALUES (2, 'acc-bob', ?, 'out', 'acc-alice', 2, 1700000002000,"
        " 1700000002100, NULL, 1700000002100, 'hi bob', ?, 'attachments/a1', 'delivered')",
        (b"\x11" * 16, b"pointer"),
    ),
    ("INSERT INTO seen_envelopes VALUES (41, 1700000001200)", ()),
    (
        "INSERT INTO outbox (conversation, message_id, content, created_ms, attempts)"
        " VALUES ('acc-bob', ?, ?, 1700000003000, 2)",
        (b"\x12" * 16, b"content-v1"),
    ),
]


# Version 2 (disappearing messages, requests, blocks, franking): rows the call-log migration
# (version 3, which rebuilds the messages table) must carry over unchanged.
# Written after ROWS (inserted at version 1) and the version-2 migration.
ROWS_V2: list[tuple[str, tuple[object, ...]]] = [
    (
        "INSERT INTO messages (seq, conversation, message_id, direction, sender_account_id,"
        " sender_device_id, sent_ms, server_ms, received_ms, sort_ms, text, attachment,"
        " attachment_path, status, kind, expire_timer_s, expire_at_ms, franking) VALUES"
        " (3, 'acc-bob', ?, 'in', 'acc-bob', 1, 1700000004000, 1700000004100, 1700000004200,"
        " 1700000004100, NULL, NULL, NULL, 'read', 'timer', 30, NULL, NULL)",
        (b"\x13" * 16,),
    ),
    (
        "INSERT INTO messages (seq, conversation, message_id, direction, sender_account_id,"
        " sender_device_id, sent_ms, server_ms, received_ms, sort_ms, text, attachment,"
        " attachment_path, status, kind, expire_timer_s, expire_at_ms, franking) VALUES"
        " (4, 'acc-bob', ?, 'in', 'acc-bob', 1, 1700000005000, 1700000005100, 1700000005200,"
        " 1700000005100, 'vanishing', NULL, NULL, 'read', 'message', 30, 1700000035200, ?)",
        (b"\x14" * 16, b"evidence-v2"),
    ),
    ("INSERT INTO conversations VALUES ('acc-bob', 30, 'accepted', 1700000004200)", ()),
    ("INSERT INTO conversations VALUES ('acc-carol', 0, 'request', 1700000006000)", ()),
    ("INSERT INTO blocked VALUES ('acc-mallory', 1700000007000)", ()),
]


def split(script: str) -> list[str]:
    """The statements of a migration script (as veil.store.schema splits them)."""
    found: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            found.append(buffer)
            buffer = ""
    return found


def build_v1(conn: sqlite3.Connection) -> None:
    """Create the version-1 schema in an empty database (no rows beyond its own)."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for statement in split(MIGRATION.read_text(encoding="utf-8")):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")


def upgrade_to_v2(conn: sqlite3.Connection) -> None:
    """Apply the statements of ``0002_conversation_rules.sql`` to a version-1 database."""
    for statement in split(MIGRATION_2.read_text(encoding="utf-8")):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")


def main(version: str = "v1") -> None:
    """Write the fixture of ``version`` (``v1`` or ``v2``), replacing an older copy."""
    path = FIXTURE_V2 if version == "v2" else FIXTURE
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA page_size = 512")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("BEGIN")
        build_v1(conn)
        for sql, params in ROWS:
            conn.execute(sql, params)
        if version == "v2":
            upgrade_to_v2(conn)
            for sql, params in ROWS_V2:
                conn.execute(sql, params)
        conn.execute("COMMIT")
        conn.execute("VACUUM")
    finally:
        conn.close()
    sys.stdout.write(f"wrote {path} ({path.stat().st_size} bytes)\n")


if __name__ == "__main__":
    main(*sys.argv[1:2])
