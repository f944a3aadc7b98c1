-- Veil server schema v3 (PostgreSQL): linking a new device (provisioning).

-- A new device's mailbox for the one provisioning message its account's existing device
-- sends it (opaque ciphertext, at most one). Only a hash of the new device's token is kept.
-- The row is deleted when the message is delivered, and once expired.
CREATE TABLE provisioning (
    provisioning_id TEXT   PRIMARY KEY,
    token_hash      BYTEA  NOT NULL,
    created_ms      BIGINT NOT NULL,
    expires_ms      BIGINT NOT NULL,
    message         BYTEA
);
CREATE INDEX provisioning_expires ON provisioning (expires_ms);

-- Single-use linking codes of an account, by hash (the code itself is never stored).
CREATE TABLE provisioning_codes (
    code_hash  BYTEA  PRIMARY KEY,
    account_id TEXT   NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX provisioning_codes_expires ON provisioning_codes (expires_ms);
CREATE INDEX provisioning_codes_account ON provisioning_codes (account_id);
