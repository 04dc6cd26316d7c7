-- SigV4 credentials (API.md "SigV4 credentials"). The secret access key is stored only as a
-- sealed record (AES-256-GCM under a DEK wrapped by the KEK; the AAD binds the access key id
-- and the principal, so a row whose principal was rewritten fails to open). Activity
-- (last use, caller fingerprints) is metadata, written in batches.

CREATE TABLE credentials (
    access_key_id      TEXT PRIMARY KEY,
    principal          TEXT NOT NULL,
    description        TEXT,
    state              TEXT NOT NULL,          -- active | inactive
    on_new_fingerprint TEXT,                   -- record | alert | deactivate; NULL = server default
    format             INTEGER NOT NULL,
    kek_id             TEXT NOT NULL,
    wrapped_dek        BLOB NOT NULL,
    nonce              BLOB NOT NULL,
    ciphertext         BLOB NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL,
    last_used_at_ms    INTEGER,
    last_used_region   TEXT,
    last_used_service  TEXT
);

CREATE INDEX credentials_principal ON credentials (principal, access_key_id);

CREATE TABLE credential_fingerprints (
    access_key_id TEXT NOT NULL REFERENCES credentials (access_key_id) ON DELETE CASCADE,
    source_ip     TEXT NOT NULL,               -- "" when the caller did not say
    user_agent    TEXT NOT NULL,               -- "" when absent
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (access_key_id, source_ip, user_agent)
);
