-- Veil server schema v1 (SQLite): accounts, devices, key directory.
-- Applied in one transaction by veil.server.sqlite_repo; no PRAGMAs here (they are per
-- connection, and foreign_keys cannot change inside a transaction).
-- Keys are stored exactly as uploaded (model.py); typeof() checks keep text out of BLOBs.

CREATE TABLE accounts (
    account_id       TEXT    NOT NULL PRIMARY KEY,
    username         TEXT    NOT NULL UNIQUE,          -- canonical (case-folded) form
    display_username TEXT    NOT NULL,
    identity_key     BLOB    NOT NULL CHECK (typeof(identity_key) = 'blob'),
    created_ms       INTEGER NOT NULL
);

CREATE TABLE devices (
    account_id      TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    device_id       INTEGER NOT NULL CHECK (device_id BETWEEN 1 AND 127),
    registration_id INTEGER NOT NULL,
    credential_hash BLOB    NOT NULL CHECK (typeof(credential_hash) = 'blob'),
    name            TEXT    NOT NULL,
    created_ms      INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_id)
);

-- The device's current signed EC prekey: at most one per device.
CREATE TABLE signed_prekeys (
    account_id TEXT    NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     INTEGER NOT NULL CHECK (key_id >= 0),
    public_key BLOB    NOT NULL CHECK (typeof(public_key) = 'blob'),
    signature  BLOB    NOT NULL CHECK (typeof(signature) = 'blob'),
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id)
        REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

-- Signed Kyber prekeys: one-time keys (last_resort = 0, unique by key_id) and the device's
-- last-resort key (last_resort = 1, at most one: the partial unique index below).
-- The primary key order makes "lowest one-time key, else the last-resort key" an index scan.
CREATE TABLE kyber_prekeys (
    account_id  TEXT    NOT NULL,
    device_id   INTEGER NOT NULL,
    last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
    key_id      INTEGER NOT NULL CHECK (key_id >= 0),
    public_key  BLOB    NOT NULL CHECK (typeof(public_key) = 'blob'),
    signature   BLOB    NOT NULL CHECK (typeof(signature) = 'blob'),
    PRIMARY KEY (account_id, device_id, last_resort, key_id),
    FOREIGN KEY (account_id, device_id)
        REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX kyber_prekeys_one_last_resort
    ON kyber_prekeys (account_id, device_id) WHERE last_resort = 1;

-- Unsigned one-time EC prekeys, unique by key_id.
CREATE TABLE one_time_prekeys (
    account_id TEXT    NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     INTEGER NOT NULL CHECK (key_id >= 0),
    public_key BLOB    NOT NULL CHECK (typeof(public_key) = 'blob'),
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id)
        REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);
