-- Veil server schema v4 (PostgreSQL): attachments, metadata and bytes (see blobs.py).

-- One row per uploaded blob. A row is written before its bytes (``complete = false``, with
-- ``expires_ms`` the upload deadline) and completed after them, so every stored byte has a
-- row and an interrupted upload is swept like an expired one. The owner is not a foreign
-- key: recipients may fetch an attachment after its uploader's account is gone.
CREATE TABLE attachments (
    attachment_id TEXT    PRIMARY KEY,
    account_id    TEXT    NOT NULL,
    created_ms    BIGINT  NOT NULL,
    expires_ms    BIGINT  NOT NULL,
    complete      BOOLEAN NOT NULL DEFAULT false,
    size          BIGINT  NOT NULL DEFAULT 0,
    sha256        BYTEA
);
CREATE INDEX attachments_expires ON attachments (expires_ms);

-- The bytes, in order, one row per chunk (1 MiB each but the last), so that several server
-- processes behind one address serve every blob. Removing the row removes its chunks.
CREATE TABLE attachment_chunks (
    attachment_id TEXT    NOT NULL REFERENCES attachments (attachment_id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL CHECK (seq >= 0),
    data          BYTEA   NOT NULL,
    PRIMARY KEY (attachment_id, seq)
);
-- Chunks are written once and read whole: no point compressing ciphertext.
ALTER TABLE attachment_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
