-- Veil server schema v4 (SQLite): attachment metadata (the bytes are files, see blobs.py).
-- Applied in one transaction by veil.server.sqlite_repo (see 0001_init.sql).

-- One row per uploaded blob. A row is written before its bytes (``complete = 0``, with
-- ``expires_ms`` the upload deadline) and completed after them, so every stored byte has a
-- row and an interrupted upload is swept like an expired one. The owner is not a foreign
-- key: recipients may fetch an attachment after its uploader's account is gone.
CREATE TABLE attachments (
    attachment_id TEXT    NOT NULL PRIMARY KEY,
    account_id    TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    complete      INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
    size          INTEGER NOT NULL DEFAULT 0,
    sha256        BLOB    CHECK (sha256 IS NULL OR typeof(sha256) = 'blob')
) WITHOUT ROWID;

CREATE INDEX attachments_expires ON attachments (expires_ms);
