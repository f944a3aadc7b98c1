-- Veil server schema v2 (PostgreSQL): message queues and idempotency answers.

-- One row per queued copy of a message. ``envelope_id`` orders a device's queue; ids are
-- allocated by store_message (nextval) before the insert, so the idempotency answer can be
-- written in the same statement. Removing a device (or its account) drops its queue.
CREATE TABLE envelopes (
    envelope_id       BIGSERIAL PRIMARY KEY,
    account_id        TEXT     NOT NULL,
    device_id         SMALLINT NOT NULL,
    sender_account_id TEXT     NOT NULL,
    sender_device_id  SMALLINT NOT NULL,
    server_ms         BIGINT   NOT NULL,
    type              SMALLINT NOT NULL,
    content           BYTEA    NOT NULL,
    FOREIGN KEY (account_id, device_id)
        REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);
CREATE INDEX envelopes_queue ON envelopes (account_id, device_id, envelope_id);

-- The first answer to a send with an idempotency key: the server time and, as three parallel
-- arrays in envelope id order, the target (account, device) and its envelope id.
CREATE TABLE idempotency (
    sender_account_id TEXT     NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    idem_key          TEXT     NOT NULL,
    created_ms        BIGINT   NOT NULL,
    server_ms         BIGINT   NOT NULL,
    account_ids       TEXT[]   NOT NULL,
    device_ids        SMALLINT[] NOT NULL,
    envelope_ids      BIGINT[] NOT NULL,
    PRIMARY KEY (sender_account_id, idem_key)
);
CREATE INDEX idempotency_created ON idempotency (created_ms);
