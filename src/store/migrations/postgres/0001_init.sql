-- sigvault schema v1 (PostgreSQL): the final shape of SQLite's migrations 1 to 11, for a new
-- database (there is no earlier PostgreSQL schema to migrate from). Metadata and sealed
-- records only: no column ever holds key material, a DEK or a token in the clear.
--
-- Types: sealed records, keyed hashes and tags are `bytea`; times, counts and revisions
-- `bigint` (Unix milliseconds); flags `boolean`; JSON stays `text` (it is bound into tags as
-- the exact text written). Every text a listing sorts or pages by is `COLLATE "C"`, so order
-- is byte order as on every backend, whatever the database's default collation.
--
-- Row integrity (src/store/integrity.rs): the rows whose fields decide who may do what, or
-- what a key does, carry `mac` (their tag) and `revision` from the start. A row is never
-- written without its tag, so `mac` is NOT NULL.

CREATE TABLE keys (
    id                    text COLLATE "C" PRIMARY KEY,   -- random, immutable; bound into every AAD
    name                  text COLLATE "C" NOT NULL UNIQUE,
    tenant                text NOT NULL,
    algorithm             text NOT NULL,
    boundary              text NOT NULL,
    owner                 text NOT NULL,
    tags                  text NOT NULL,                  -- JSON object of strings
    state                 text NOT NULL,
    latest_version        bigint NOT NULL,
    min_verify_version    bigint NOT NULL,
    exportable            boolean NOT NULL,
    auto_rotate_period_s  bigint,
    deletion_due_ms       bigint,
    state_before_deletion text,                           -- what restore returns to
    created_at_ms         bigint NOT NULL,
    updated_at_ms         bigint NOT NULL,
    revision              bigint NOT NULL,                -- bumped by every update
    mac                   bytea NOT NULL
);

CREATE INDEX keys_deletion_due ON keys (deletion_due_ms) WHERE deletion_due_ms IS NOT NULL;

CREATE TABLE key_versions (
    key_id          text COLLATE "C" NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    version         bigint NOT NULL,
    created_at_ms   bigint NOT NULL,
    format          bigint NOT NULL,                      -- sealed record format
    kek_id          text NOT NULL,
    wrapped_dek     bytea NOT NULL,
    nonce           bytea NOT NULL,
    ciphertext      bytea NOT NULL,                       -- AES-256-GCM ciphertext || tag
    sign_count      bigint NOT NULL DEFAULT 0,
    verify_count    bigint NOT NULL DEFAULT 0,
    last_used_at_ms bigint,
    PRIMARY KEY (key_id, version)
);

-- Vault-internal secrets (the token pepper, the audit key), sealed like any other.
CREATE TABLE system_secrets (
    name          text COLLATE "C" PRIMARY KEY,
    format        bigint NOT NULL,
    kek_id        text NOT NULL,
    wrapped_dek   bytea NOT NULL,
    nonce         bytea NOT NULL,
    ciphertext    bytea NOT NULL,
    created_at_ms bigint NOT NULL
);

-- Small non-secret values (e.g. the keyed hash of the root token).
CREATE TABLE system_values (
    name          text COLLATE "C" PRIMARY KEY,
    value         bytea NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- Named caller tokens: `hash` is HMAC-SHA256 under the pepper key, never the token.
CREATE TABLE caller_tokens (
    id            text COLLATE "C" PRIMARY KEY,
    hash          bytea NOT NULL UNIQUE,
    principal     text NOT NULL,
    groups_json   text NOT NULL,                          -- JSON array of group names
    description   text,
    created_at_ms bigint NOT NULL,
    expires_at_ms bigint,
    revoked_at_ms bigint,
    revision      bigint NOT NULL DEFAULT 0,
    mac           bytea NOT NULL
);

-- SigV4 credentials: the secret only as a sealed record (its AAD binds the access key id and
-- the principal).
CREATE TABLE credentials (
    access_key_id      text COLLATE "C" PRIMARY KEY,
    principal          text COLLATE "C" NOT NULL,
    description        text,
    state              text NOT NULL,                     -- active | inactive
    on_new_fingerprint text,                              -- record | alert | deactivate; NULL = server default
    format             bigint NOT NULL,
    kek_id             text NOT NULL,
    wrapped_dek        bytea NOT NULL,
    nonce              bytea NOT NULL,
    ciphertext         bytea NOT NULL,
    created_at_ms      bigint NOT NULL,
    updated_at_ms      bigint NOT NULL,
    last_used_at_ms    bigint,
    last_used_region   text,
    last_used_service  text,
    revision           bigint NOT NULL DEFAULT 0,
    mac                bytea NOT NULL
);

CREATE INDEX credentials_principal ON credentials (principal, access_key_id);

-- Where a credential or an API key was used from. `seq` orders fingerprints seen at the same
-- millisecond by when they were first stored (SQLite's rowid).
CREATE TABLE credential_fingerprints (
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    access_key_id text COLLATE "C" NOT NULL REFERENCES credentials (access_key_id) ON DELETE CASCADE,
    source_ip     text NOT NULL,                          -- "" when the caller did not say
    user_agent    text NOT NULL,                          -- "" when absent
    first_seen_ms bigint NOT NULL,
    last_seen_ms  bigint NOT NULL,
    count         bigint NOT NULL,
    PRIMARY KEY (access_key_id, source_ip, user_agent)
);

-- Bearer API keys: never a key, only its keyed hashes (`api_key_hashes`). A key has one
-- current hash (valid_until_ms NULL) and, after a reroll, the previous one until its grace
-- period ends.
CREATE TABLE api_keys (
    id                  text COLLATE "C" PRIMARY KEY,
    prefix              text NOT NULL,
    principal           text NOT NULL,
    state               text NOT NULL,                    -- enabled | disabled | revoked
    meta                text NOT NULL,                    -- JSON object
    permissions         text NOT NULL,                    -- JSON array of strings
    expires_at_ms       bigint,
    remaining           bigint,                           -- NULL: no credit limit
    ratelimit_limit     bigint,
    ratelimit_period_ms bigint,
    on_new_fingerprint  text,                             -- record | alert | deactivate; NULL = server default
    created_at_ms       bigint NOT NULL,
    updated_at_ms       bigint NOT NULL,
    last_used_at_ms     bigint,
    revoked_at_ms       bigint,
    revision            bigint NOT NULL DEFAULT 0,
    mac                 bytea NOT NULL,
    CHECK (remaining IS NULL OR remaining >= 0)
);

CREATE TABLE api_key_hashes (
    hash           bytea PRIMARY KEY,
    key_id         text COLLATE "C" NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    valid_until_ms bigint,
    mac            bytea NOT NULL
);

CREATE INDEX api_key_hashes_key ON api_key_hashes (key_id);

CREATE TABLE api_key_fingerprints (
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    key_id        text COLLATE "C" NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    source_ip     text NOT NULL,
    user_agent    text NOT NULL,
    first_seen_ms bigint NOT NULL,
    last_seen_ms  bigint NOT NULL,
    count         bigint NOT NULL,
    PRIMARY KEY (key_id, source_ip, user_agent)
);

-- The audit trail's queryable copy: each row holds up to 512 consecutive events of one node
-- exactly as the event file holds them (`{"event":…,"mac":"…"}` lines), with the range of
-- their sequence numbers and times. Each node appends only to its own chain, keyed by
-- (node, first_seq), so nodes sharing the database never write the same rows.
CREATE TABLE audit_batches (
    node        text COLLATE "C" NOT NULL,
    first_seq   bigint NOT NULL,
    last_seq    bigint NOT NULL,
    time_min    text COLLATE "C" NOT NULL,                -- fixed-width RFC 3339 UTC (ms), which
    time_max    text COLLATE "C" NOT NULL,                -- sorts as text (byte order)
    ends_append boolean NOT NULL,                         -- the last row of an append (a batch end)
    lines       bytea NOT NULL,
    PRIMARY KEY (node, first_seq)
);
