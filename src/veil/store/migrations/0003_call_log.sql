-- Veil device store, schema v3: the call log (Issue 6; see 0001_init.sql for the conventions.
-- Never edit once released).
--
-- A call is a line of its conversation: a messages row of kind 'call', written by the device
-- when the call ends. The CHECK on kind cannot be altered in place, so the table is rebuilt
-- (SQLite's "make other kinds of table schema changes" procedure: create, copy, drop,
-- rename, index); nothing references messages, so no foreign key or trigger needs care.
-- call_media: 'audio' or 'video'; call_outcome: completed, missed, declined, busy,
-- no_answer, cancelled, answered_elsewhere or failed; call_end_reason: the call's raw end
-- reason (hangup, timeout, peer_lost, ...); call_duration_ms: connected time (NULL: never
-- connected). All four are set exactly for kind 'call'.
CREATE TABLE messages_v3 (
    seq               INTEGER NOT NULL PRIMARY KEY,
    conversation      TEXT    NOT NULL,
    message_id        BLOB    NOT NULL CHECK (typeof(message_id) = 'blob'),
    direction         TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    sender_account_id TEXT    NOT NULL,
    sender_device_id  INTEGER NOT NULL,
    sent_ms           INTEGER NOT NULL,
    server_ms         INTEGER,
    received_ms       INTEGER,
    sort_ms           INTEGER NOT NULL,
    text              TEXT,
    attachment        BLOB CHECK (attachment IS NULL OR typeof(attachment) = 'blob'),
    attachment_path   TEXT,
    status            TEXT    NOT NULL CHECK (
        (direction = 'out' AND status IN ('sending', 'sent', 'delivered', 'read', 'failed'))
        OR (direction = 'in' AND status IN ('received', 'read'))
    ),
    kind              TEXT    NOT NULL DEFAULT 'message'
        CHECK (kind IN ('message', 'timer', 'call')),
    expire_timer_s    INTEGER NOT NULL DEFAULT 0 CHECK (expire_timer_s >= 0),
    expire_at_ms      INTEGER,
    franking          BLOB CHECK (franking IS NULL OR typeof(franking) = 'blob'),
    call_media        TEXT CHECK (call_media IS NULL OR call_media IN ('audio', 'video')),
    call_outcome      TEXT CHECK (call_outcome IS NULL OR call_outcome IN (
        'completed', 'missed', 'declined', 'busy', 'no_answer', 'cancelled',
        'answered_elsewhere', 'failed'
    )),
    call_end_reason   TEXT,
    call_duration_ms  INTEGER CHECK (call_duration_ms IS NULL OR call_duration_ms >= 0),
    CHECK ((kind = 'call') = (call_media IS NOT NULL AND call_outcome IS NOT NULL
                              AND call_end_reason IS NOT NULL)),
    UNIQUE (conversation, sender_account_id, message_id)
);
INSERT INTO messages_v3 (
    seq, conversation, message_id, direction, sender_account_id, sender_device_id, sent_ms,
    server_ms, received_ms, sort_ms, text, attachment, attachment_path, status, kind,
    expire_timer_s, expire_at_ms, franking
)
SELECT
    seq, conversation, message_id, direction, sender_account_id, sender_device_id, sent_ms,
    server_ms, received_ms, sort_ms, text, attachment, attachment_path, status, kind,
    expire_timer_s, expire_at_ms, franking
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;
CREATE INDEX messages_timeline ON messages (conversation, sort_ms, seq);
CREATE INDEX messages_by_id ON messages (conversation, message_id);
CREATE INDEX messages_unread ON messages (conversation) WHERE direction = 'in' AND status = 'received';
CREATE INDEX messages_expiry ON messages (expire_at_ms) WHERE expire_at_ms IS NOT NULL;
