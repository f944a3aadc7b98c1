-- Veil server schema v7 (SQLite): message franking -- reporting secrets and abuse reports.
-- Applied in one transaction by veil.server.sqlite_repo (see 0001_init.sql). SQL in
-- veil/server/sqlite_reports.py; the scheme is veil/core/franking.py.

-- The server's reporting secrets (HMAC keys of the reporting tags), newest = current. Old
-- keys are kept: a report may reveal a message delivered before a rotation.
CREATE TABLE reporting_keys (
    key_id     INTEGER NOT NULL PRIMARY KEY CHECK (key_id BETWEEN 1 AND 2147483647),
    secret     BLOB    NOT NULL CHECK (typeof(secret) = 'blob' AND length(secret) >= 32),
    created_ms INTEGER NOT NULL
);

-- One verified report. Not foreign keys to accounts: a report outlives the accounts it
-- names (usernames are copied at submission for the same reason).
CREATE TABLE reports (
    report_id           TEXT    NOT NULL PRIMARY KEY,
    reporter_account_id TEXT    NOT NULL,
    reporter_username   TEXT    NOT NULL,
    reporter_device_id  INTEGER NOT NULL,
    reported_account_id TEXT    NOT NULL,
    reported_username   TEXT    NOT NULL,
    created_ms          INTEGER NOT NULL,
    reason              TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;

CREATE INDEX reports_created ON reports (created_ms, report_id);

-- The revealed messages of a report, each verified against its reporting tag: what the
-- decoded content says (text, message id, sender's clock, attachment summary -- never the
-- attachment key) and the context the tag bound.
CREATE TABLE reported_messages (
    report_id               TEXT    NOT NULL REFERENCES reports (report_id) ON DELETE CASCADE,
    idx                     INTEGER NOT NULL CHECK (idx >= 0),
    sender_device_id        INTEGER NOT NULL,
    recipient_device_id     INTEGER NOT NULL,
    server_ms               INTEGER NOT NULL,
    key_id                  INTEGER NOT NULL,
    message_id              TEXT    NOT NULL,
    sent_ms                 INTEGER NOT NULL,
    text                    TEXT,
    attachment_file_name    TEXT,
    attachment_size         INTEGER,
    attachment_content_type TEXT,
    attachment_digest       BLOB,
    PRIMARY KEY (report_id, idx)
) WITHOUT ROWID;

-- Replay guard: SHA-256 of every accepted reporting tag, per reporter, so one message cannot
-- be reported twice by the same account.
CREATE TABLE reported_tags (
    reporter_account_id TEXT NOT NULL,
    tag_sha256          BLOB NOT NULL CHECK (typeof(tag_sha256) = 'blob'),
    report_id           TEXT NOT NULL REFERENCES reports (report_id) ON DELETE CASCADE,
    PRIMARY KEY (reporter_account_id, tag_sha256)
) WITHOUT ROWID;
