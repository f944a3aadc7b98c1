-- Veil server schema v1 (PostgreSQL): accounts, devices and the key directory.
-- Mirrors migrations/sqlite/0001_init.sql; keys are stored exactly as uploaded.

CREATE TABLE accounts (
    account_id       TEXT    PRIMARY KEY,
    username         TEXT    NOT NULL CONSTRAINT accounts_username_key UNIQUE,
    display_username TEXT    NOT NULL,
    identity_key     BYTEA   NOT NULL,
    created_ms       BIGINT  NOT NULL
);

CREATE TABLE devices (
    account_id      TEXT     NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    device_id       SMALLINT NOT NULL CHECK (device_id BETWEEN 1 AND 127),
    registration_id BIGINT   NOT NULL,
    credential_hash BYTEA    NOT NULL,
    name            TEXT     NOT NULL,
    created_ms      BIGINT   NOT NULL,
    PRIMARY KEY (account_id, device_id)
);

-- The device's current signed EC prekey (one per device).
CREATE TABLE signed_prekeys (
    account_id TEXT     NOT NULL,
    device_id  SMALLINT NOT NULL,
    key_id     BIGINT   NOT NULL,
    public_key BYTEA    NOT NULL,
    signature  BYTEA    NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id)
        REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

-- Signed Kyber prekeys: one-time keys (unique by id per device) and at most one last-resort
-- key per device; a last-resort key may share its id with a one-time key.
CREATE TABLE kyber_prekeys (
    account_id  TEXT     NOT NULL,
    device_id   SMALLINT NOT NULL,
    key_id      BIGINT   NOT NULL,
    public_key  BYTEA    NOT NULL,
    signature   BYTEA    NOT NULL,
    last_resort BOOLEAN  NOT NULL,
    FOREIGN KEY (account_id, device_id)
        REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX kyber_prekeys_one_time
    ON kyber_prekeys (account_id, device_id, key_id) WHERE NOT last_resort;
CREATE UNIQUE INDEX kyber_prekeys_last_resort
    ON kyber_prekeys (account_id, device_id) WHERE last_resort;

-- Unsigned one-time EC prekeys.
CREATE TABLE one_time_prekeys (
    account_id TEXT     NOT NULL,
    device_id  SMALLINT NOT NULL,
    key_id     BIGINT   NOT NULL,
    public_key BYTEA    NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id)
        REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);
