-- Veil device store, schema v1 (one SQLite file per device profile).
-- Applied in one transaction by veil.store.schema; no PRAGMAs here (they are per connection,
-- and user_version is set by the code after the script). Never edit this file once released:
-- add 0002_*.sql instead. typeof() checks keep text out of BLOB columns and vice versa.

-- This device's account: exactly one row (singleton = 1) once registered or linked.
CREATE TABLE account (
    singleton        INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    server_url       TEXT    NOT NULL,
    account_id       TEXT    NOT NULL,
    device_id        INTEGER NOT NULL CHECK (device_id >= 1),
    credential       TEXT    NOT NULL,
    username         TEXT    NOT NULL,
    identity_private BLOB    NOT NULL CHECK (typeof(identity_private) = 'blob'),
    registration_id  INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL
);

-- Monotonic key-id counters, one per kind of prekey (next_key_id).
CREATE TABLE key_counters (
    kind    TEXT    NOT NULL PRIMARY KEY CHECK (kind IN ('signed', 'kyber', 'one_time')),
    last_id INTEGER NOT NULL CHECK (last_id >= 0)
) WITHOUT ROWID;
INSERT INTO key_counters (kind, last_id) VALUES ('signed', 0), ('kyber', 0), ('one_time', 0);

-- Private halves of our prekeys, as opaque bytes.
CREATE TABLE signed_prekeys (
    key_id     INTEGER NOT NULL PRIMARY KEY,
    private    BLOB    NOT NULL CHECK (typeof(private) = 'blob'),
    created_ms INTEGER NOT NULL
);

CREATE TABLE kyber_prekeys (
    key_id      INTEGER NOT NULL PRIMARY KEY,
    secret      BLOB    NOT NULL CHECK (typeof(secret) = 'blob'),
    last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
    created_ms  INTEGER NOT NULL
);

CREATE TABLE one_time_prekeys (
    key_id  INTEGER NOT NULL PRIMARY KEY,
    private BLOB    NOT NULL CHECK (typeof(private) = 'blob')
);

-- Serialized SessionRecord per peer device.
CREATE TABLE sessions (
    account_id TEXT    NOT NULL,
    device_id  INTEGER NOT NULL,
    record     BLOB    NOT NULL CHECK (typeof(record) = 'blob'),
    PRIMARY KEY (account_id, device_id)
) WITHOUT ROWID;

-- Known identity keys of peers with their trust state.
CREATE TABLE identities (
    account_id    TEXT    NOT NULL PRIMARY KEY,
    identity_key  BLOB    NOT NULL CHECK (typeof(identity_key) = 'blob'),
    trust         TEXT    NOT NULL CHECK (trust IN ('unverified', 'verified', 'changed')),
    first_seen_ms INTEGER NOT NULL,
    changed_ms    INTEGER
) WITHOUT ROWID;

-- Account id <-> username. username_key is the case-folded name (Python str.casefold), for
-- case-insensitive look-ups; a REPLACE gives the row a new rowid, so the newest save of a
-- username wins when two accounts carried it.
CREATE TABLE contacts (
    account_id   TEXT NOT NULL UNIQUE,
    username     TEXT NOT NULL,
    username_key TEXT NOT NULL
);
CREATE INDEX contacts_by_username ON contacts (username_key);

-- Messages of 1:1 conversations (conversation = the peer's account id). sort_ms is the
-- timeline position: server time when known (one clock for every sender), else sent_ms.
CREATE TABLE messages (
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
    UNIQUE (conversation, sender_account_id, message_id)
);
CREATE INDEX messages_timeline ON messages (conversation, sort_ms, seq);
CREATE INDEX messages_by_id ON messages (conversation, message_id);
CREATE INDEX messages_unread ON messages (conversation) WHERE direction = 'in' AND status = 'received';

-- Envelope ids already processed (at-least-once delivery from the server).
CREATE TABLE seen_envelopes (
    envelope_id INTEGER NOT NULL PRIMARY KEY,
    at_ms       INTEGER NOT NULL
);
CREATE INDEX seen_envelopes_by_time ON seen_envelopes (at_ms);

-- Encoded contents waiting to be sent; AUTOINCREMENT so a removed id is never reused.
CREATE TABLE outbox (
    item_id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    conversation TEXT    NOT NULL,
    message_id   BLOB    NOT NULL CHECK (typeof(message_id) = 'blob'),
    content      BLOB    NOT NULL CHECK (typeof(content) = 'blob'),
    created_ms   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);
