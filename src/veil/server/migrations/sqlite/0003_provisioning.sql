-- Veil server schema v3 (SQLite): linking a new device (provisioning).
-- Applied in one transaction by veil.server.sqlite_repo (see 0001_init.sql).

-- A new device's mailbox for the one provisioning message its account's existing device
-- sends it (opaque ciphertext, at most one). Only a hash of the new device's token is kept.
-- The row is deleted when the message is delivered, and once expired.
CREATE TABLE provisioning (
    provisioning_id TEXT    NOT NULL PRIMARY KEY,
    token_hash      BLOB    NOT NULL CHECK (typeof(token_hash) = 'blob'),
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    message         BLOB    CHECK (message IS NULL OR typeof(message) = 'blob')
) WITHOUT ROWID;

CREATE INDEX provisioning_expires ON provisioning (expires_ms);

-- Single-use linking codes of an account, by hash (the code itself is never stored).
CREATE TABLE provisioning_codes (
    code_hash  BLOB    NOT NULL PRIMARY KEY CHECK (typeof(code_hash) = 'blob'),
    account_id TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX provisioning_codes_expires ON provisioning_codes (expires_ms);
CREATE INDEX provisioning_codes_account ON provisioning_codes (account_id);
