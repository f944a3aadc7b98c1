-- Veil server schema v5 (PostgreSQL): token buckets shared by the server processes.
-- (v3 and v4 are provisioning and attachments.) See veil/server/postgres_ratelimit.py.
--
-- One row per (scope, key) bucket: ``tokens`` left at ``updated`` (seconds since the epoch,
-- the servers' wall clock); ``granted`` is whether the last take was allowed (what the upsert
-- returns). A missing row is a full bucket, so a row idle for its refill time can be deleted
-- without changing any answer. UNLOGGED: no WAL for these hot, disposable rows; after a crash
-- the table is empty (every bucket full again) and it is not copied to replicas.
-- No index on ``updated``: updates stay HOT, and the cleanup's scan is rare and small.

CREATE UNLOGGED TABLE rate_limits (
    scope   TEXT             NOT NULL,
    key     TEXT             NOT NULL,
    tokens  DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    granted BOOLEAN          NOT NULL,
    PRIMARY KEY (scope, key)
) WITH (fillfactor = 70);
