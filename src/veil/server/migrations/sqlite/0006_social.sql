-- Veil server schema v6 (SQLite): who may reach whom, and what an envelope carries besides
-- its ciphertext. Applied in one transaction by veil.server.sqlite_repo (see 0001_init.sql).
-- The rule that uses these tables is in veil/wire/social.py and veil/server/sqlite_messages.py.

-- ``follower`` follows ``followee``. A mutual follow lets either start a chat.
CREATE TABLE follows (
    follower   TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    followee   TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (follower, followee)
) WITHOUT ROWID;
CREATE INDEX follows_followee ON follows (followee, follower);

-- ``owner`` accepts ``peer``'s messages in the inbox (not as message requests): the owner
-- accepted the peer's request, or wrote to the peer.
CREATE TABLE chats (
    owner      TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    peer       TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, peer)
) WITHOUT ROWID;
CREATE INDEX chats_peer ON chats (peer, owner);

-- ``blocker`` blocks ``blocked``: nothing ``blocked`` sends is stored for ``blocker``.
CREATE TABLE blocks (
    blocker    TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    blocked    TEXT    NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;
CREATE INDEX blocks_blocked ON blocks (blocked, blocker);

-- Message franking (veil/core/franking.py): the sender's tag and the server's tag over it
-- (empty when the sender sent none), and which reporting secret made it. ``request``: the
-- copy is a message request (the recipient has not accepted the sender).
ALTER TABLE envelopes ADD COLUMN request INTEGER NOT NULL DEFAULT 0 CHECK (request IN (0, 1));
ALTER TABLE envelopes ADD COLUMN franking_tag BLOB NOT NULL DEFAULT x'';
ALTER TABLE envelopes ADD COLUMN reporting_tag BLOB NOT NULL DEFAULT x'';
ALTER TABLE envelopes ADD COLUMN franking_key_id INTEGER NOT NULL DEFAULT 0;

-- Queue retention: the sweeper deletes envelopes older than queue_retention_days, oldest
-- first (server_ms only grows, so inserts append to this index).
CREATE INDEX envelopes_server_ms ON envelopes (server_ms);
