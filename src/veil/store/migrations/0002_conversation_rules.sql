-- Veil device store, schema v2: disappearing messages, message requests, blocks, franking.
-- (Issue 5; see 0001_init.sql for the conventions. Never edit once released.)

-- kind: a message, or a "timer changed" line shown in the conversation (its new value in
-- expire_timer_s). expire_timer_s: the message's own timer (0: never disappears).
-- expire_at_ms: when it disappears from this device (NULL: not counting yet -- an incoming
-- message starts counting when it is first read). franking: the evidence that lets the
-- user report a received message (franked content, franking key, server's reporting tag).
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'message'
    CHECK (kind IN ('message', 'timer'));
ALTER TABLE messages ADD COLUMN expire_timer_s INTEGER NOT NULL DEFAULT 0
    CHECK (expire_timer_s >= 0);
ALTER TABLE messages ADD COLUMN expire_at_ms INTEGER;
ALTER TABLE messages ADD COLUMN franking BLOB
    CHECK (franking IS NULL OR typeof(franking) = 'blob');
CREATE INDEX messages_expiry ON messages (expire_at_ms) WHERE expire_at_ms IS NOT NULL;

-- Per-conversation settings: the disappearing-message timer, and whether the conversation
-- is accepted or still a message request. No row: accepted, no timer (nothing happened yet).
CREATE TABLE conversations (
    conversation TEXT    NOT NULL PRIMARY KEY,
    timer_s      INTEGER NOT NULL DEFAULT 0 CHECK (timer_s >= 0),
    state        TEXT    NOT NULL DEFAULT 'accepted' CHECK (state IN ('accepted', 'request')),
    updated_ms   INTEGER NOT NULL
) WITHOUT ROWID;

-- Accounts this user blocks (kept in step with the server's list and our other devices).
CREATE TABLE blocked (
    account_id TEXT    NOT NULL PRIMARY KEY,
    since_ms   INTEGER NOT NULL
) WITHOUT ROWID;
