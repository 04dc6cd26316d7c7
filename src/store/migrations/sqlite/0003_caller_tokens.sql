-- Named caller tokens (API.md "Callers"). The token itself is never stored: `hash` is
-- HMAC-SHA256 under the pepper key (src/auth/keyed_hash.rs), so a copy of this table gives
-- nothing to test guesses against. Revoked rows stay (with revoked_at_ms) for the audit.

CREATE TABLE caller_tokens (
    id            TEXT PRIMARY KEY,
    hash          BLOB NOT NULL UNIQUE,
    principal     TEXT NOT NULL,
    groups_json   TEXT NOT NULL,        -- JSON array of group names
    description   TEXT,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);
