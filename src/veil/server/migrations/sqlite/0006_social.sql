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
-- accepted the peer's request, or wrote to the peer. The first message between two people
-- inserts a row here on the send path, so the table has no foreign keys (two lookups per
-- insert) and no index on peer (a second B-tree to write): the trigger below removes an
-- account's rows, as ON DELETE CASCADE would, and both accounts exist when a row is written.
CREATE TABLE chats (
    owner      TEXT    NOT NULL,
    peer       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, peer)
) WITHOUT ROWID;

CREATE TRIGGER chats_of_deleted_accounts AFTER DELETE ON accounts BEGIN
    DELETE FROM chats WHERE owner = OLD.account_id OR peer = OLD.account_id;
END;

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
