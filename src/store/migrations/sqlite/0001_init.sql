-- sigvault schema v1 (SQLite). Metadata and sealed records only: no column ever holds
-- key material, a DEK or a token in the clear.

CREATE TABLE keys (
    id                   TEXT PRIMARY KEY,        -- random, immutable; bound into every AAD
    name                 TEXT NOT NULL UNIQUE,
    tenant               TEXT NOT NULL,
    algorithm            TEXT NOT NULL,
    boundary             TEXT NOT NULL,
    owner                TEXT NOT NULL,
    tags                 TEXT NOT NULL,           -- JSON object of strings
    state                TEXT NOT NULL,
    latest_version       INTEGER NOT NULL,
    min_verify_version   INTEGER NOT NULL,
    exportable           INTEGER NOT NULL,
    auto_rotate_period_s INTEGER,
    deletion_due_ms      INTEGER,
    state_before_deletion TEXT,                   -- what restore returns to
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL,
    revision             INTEGER NOT NULL         -- bumped by every update (optimistic locking)
);

CREATE INDEX keys_deletion_due ON keys (deletion_due_ms) WHERE deletion_due_ms IS NOT NULL;

CREATE TABLE key_versions (
    key_id          TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    format          INTEGER NOT NULL,             -- sealed record format
    kek_id          TEXT NOT NULL,
    wrapped_dek     BLOB NOT NULL,
    nonce           BLOB NOT NULL,
    ciphertext      BLOB NOT NULL,                -- AES-256-GCM ciphertext || tag
    sign_count      INTEGER NOT NULL DEFAULT 0,
    verify_count    INTEGER NOT NULL DEFAULT 0,
    last_used_at_ms INTEGER,
    PRIMARY KEY (key_id, version)
);

-- Vault-internal secrets (the token pepper, later the audit key), sealed like any other.
CREATE TABLE system_secrets (
    name          TEXT PRIMARY KEY,
    format        INTEGER NOT NULL,
    kek_id        TEXT NOT NULL,
    wrapped_dek   BLOB NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- Small non-secret values (e.g. the keyed hash of the root token).
CREATE TABLE system_values (
    name          TEXT PRIMARY KEY,
    value         BLOB NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
