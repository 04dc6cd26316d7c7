-- Bearer API keys (API.md "Bearer API keys"). A key is never stored: `api_key_hashes.hash`
-- is HMAC-SHA256 under the pepper key (sealed under the KEK), so a copy of these tables has
-- nothing to test guesses against. A key id has one current hash (valid_until_ms NULL) and,
-- after a reroll, the previous one until its grace period ends.

CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,
    prefix              TEXT NOT NULL,
    principal           TEXT NOT NULL,
    state               TEXT NOT NULL,          -- enabled | disabled | revoked
    meta                TEXT NOT NULL,          -- JSON object
    permissions         TEXT NOT NULL,          -- JSON array of strings
    expires_at_ms       INTEGER,
    remaining           INTEGER,                -- NULL: no credit limit; never below 0
    ratelimit_limit     INTEGER,
    ratelimit_period_ms INTEGER,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    last_used_at_ms     INTEGER,
    revoked_at_ms       INTEGER,
    CHECK (remaining IS NULL OR remaining >= 0)
);

CREATE TABLE api_key_hashes (
    hash           BLOB PRIMARY KEY,
    key_id         TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    valid_until_ms INTEGER
);

CREATE INDEX api_key_hashes_key ON api_key_hashes (key_id);
