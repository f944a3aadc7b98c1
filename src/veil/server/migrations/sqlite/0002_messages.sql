-- Veil server schema v2 (SQLite): message queues and idempotency answers.
-- Applied in one transaction by veil.server.sqlite_repo (see 0001_init.sql).

-- One row per (message, target device). AUTOINCREMENT: ids only grow and are never reused,
-- even after the newest envelopes were acknowledged, so "id > after_id" paging stays sound.
-- Senders are not foreign keys: a queued message outlives its sender's account.
CREATE TABLE envelopes (
    envelope_id       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    account_id        TEXT    NOT NULL,
    device_id         INTEGER NOT NULL,
    sender_account_id TEXT    NOT NULL,
    sender_device_id  INTEGER NOT NULL,
    server_ms         INTEGER NOT NULL,
    type              INTEGER NOT NULL,
    content           BLOB    NOT NULL CHECK (typeof(content) = 'blob'),
    FOREIGN KEY (account_id, device_id)
        REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

-- A device's queue in order (fetch, count, ack) and the ON DELETE CASCADE lookup.
CREATE INDEX envelopes_queue ON envelopes (account_id, device_id, envelope_id);

-- The first answer to a send with an idempotency key, per sender account. ``answer`` is
-- the JSON list [[account_id, device_id, envelope_id], ...] of the stored envelopes.
CREATE TABLE idempotency (
    sender_account_id TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    idem_key          TEXT    NOT NULL,
    created_ms        INTEGER NOT NULL,
    server_ms         INTEGER NOT NULL,
    answer            BLOB    NOT NULL CHECK (typeof(answer) = 'blob'),
    PRIMARY KEY (sender_account_id, idem_key)
) WITHOUT ROWID;

CREATE INDEX idempotency_created ON idempotency (created_ms);

-- Queue depth per device, kept by triggers, so the queue limit check of a send costs nothing
-- (COUNT(*) over a deep queue is O(depth) on every send to that device). Statement counts
-- (changes(), rowcount) do not include trigger work. When a device is deleted, its cascaded
-- envelope deletes run after the device row is gone and update nothing.
ALTER TABLE devices ADD COLUMN queue_depth INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER envelopes_count_insert AFTER INSERT ON envelopes BEGIN
    UPDATE devices SET queue_depth = queue_depth + 1
        WHERE account_id = NEW.account_id AND device_id = NEW.device_id;
END;

CREATE TRIGGER envelopes_count_delete AFTER DELETE ON envelopes BEGIN
    UPDATE devices SET queue_depth = queue_depth - 1
        WHERE account_id = OLD.account_id AND device_id = OLD.device_id;
END;
