-- Veil server schema v7 (PostgreSQL): message franking -- reporting secrets and abuse
-- reports. SQL in veil/server/postgres_reports.py; the scheme is veil/core/franking.py.

-- The server's reporting secrets (HMAC keys of the reporting tags), newest = current. Old
-- keys are kept: a report may reveal a message delivered before a rotation.
CREATE TABLE reporting_keys (
    key_id     INTEGER PRIMARY KEY CHECK (key_id >= 1),
    secret     BYTEA   NOT NULL CHECK (length(secret) >= 32),
    created_ms BIGINT  NOT NULL
);

-- One verified report. Not foreign keys to accounts: a report outlives the accounts it
-- names (usernames are copied at submission for the same reason).
CREATE TABLE reports (
    report_id           TEXT     PRIMARY KEY,
    reporter_account_id TEXT     NOT NULL,
    reporter_username   TEXT     NOT NULL,
    reporter_device_id  SMALLINT NOT NULL,
    reported_account_id TEXT     NOT NULL,
    reported_username   TEXT     NOT NULL,
    created_ms          BIGINT   NOT NULL,
    reason              TEXT     NOT NULL DEFAULT ''
);
CREATE INDEX reports_created ON reports (created_ms, report_id);

-- The revealed messages of a report, each verified against its reporting tag: what the
-- decoded content says (text, message id, sender's clock, attachment summary -- never the
-- attachment key) and the context the tag bound. Text, file name and content type are UTF-8
-- as BYTEA: a revealed message may hold a NUL character, which TEXT cannot store.
CREATE TABLE reported_messages (
    report_id               TEXT     NOT NULL REFERENCES reports (report_id) ON DELETE CASCADE,
    idx                     INTEGER  NOT NULL CHECK (idx >= 0),
    sender_device_id        SMALLINT NOT NULL,
    recipient_device_id     SMALLINT NOT NULL,
    server_ms               BIGINT   NOT NULL,
    key_id                  INTEGER  NOT NULL,
    message_id              TEXT     NOT NULL,
    sent_ms                 BIGINT   NOT NULL,
    text                    BYTEA,
    attachment_file_name    BYTEA,
    attachment_size         BIGINT,
    attachment_content_type BYTEA,
    attachment_digest       BYTEA,
    PRIMARY KEY (report_id, idx)
);

-- Replay guard: SHA-256 of every accepted reporting tag, per reporter, so one message cannot
-- be reported twice by the same account.
CREATE TABLE reported_tags (
    reporter_account_id TEXT  NOT NULL,
    tag_sha256          BYTEA NOT NULL,
    report_id           TEXT  NOT NULL REFERENCES reports (report_id) ON DELETE CASCADE,
    PRIMARY KEY (reporter_account_id, tag_sha256)
);
