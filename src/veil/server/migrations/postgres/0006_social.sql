-- Veil server schema v6 (PostgreSQL): who may reach whom, and what an envelope carries
-- besides its ciphertext. Mirrors migrations/sqlite/0006_social.sql; the rule that uses these
-- tables is in veil/wire/social.py and the _STORE statement of veil/server/postgres_messages.py.

-- ``follower`` follows ``followee``. A mutual follow lets either start a chat.
CREATE TABLE follows (
    follower   TEXT   NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    followee   TEXT   NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (follower, followee)
);
CREATE INDEX follows_followee ON follows (followee, follower);

-- ``owner`` accepts ``peer``'s messages in the inbox (not as message requests): the owner
-- accepted the peer's request, or wrote to the peer.
CREATE TABLE chats (
    owner      TEXT   NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    peer       TEXT   NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, peer)
);
-- (No index on peer: only an account deletion looks chats up by peer; every first message
-- between two people inserts here, and one B-tree is half the page writes of two.)

-- ``blocker`` blocks ``blocked``: nothing ``blocked`` sends is stored for ``blocker``.
CREATE TABLE blocks (
    blocker    TEXT   NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    blocked    TEXT   NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked, blocker);

-- Message franking (veil/core/franking.py): the sender's tag and the server's tag over it
-- (empty when the sender sent none), and which reporting secret made it. ``request``: the
-- copy is a message request. Constant defaults: no table rewrite.
ALTER TABLE envelopes
    ADD COLUMN request         BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN franking_tag    BYTEA   NOT NULL DEFAULT '',
    ADD COLUMN reporting_tag   BYTEA   NOT NULL DEFAULT '',
    ADD COLUMN franking_key_id INTEGER NOT NULL DEFAULT 0;
