-- Caller fingerprints of bearer API keys (API.md "Bearer API keys"), as credentials have
-- them (migration 4): each key's own `on_new_fingerprint` rule and where it was used from.
-- The rule decides a right (a use from a new caller may disable the key), so it is bound into
-- the row's integrity tag (src/store/integrity.rs) — as a trailing field present only when
-- set, so rows tagged before this migration keep their tags and need no re-tagging here.
-- Fingerprints decide no right and carry no tag. Applied at open, like every migration but
-- row integrity's: it adds a nullable column and a table, whichever of the two runs first.

ALTER TABLE api_keys ADD COLUMN on_new_fingerprint TEXT;   -- record | alert | deactivate; NULL = server default

CREATE TABLE api_key_fingerprints (
    key_id        TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    source_ip     TEXT NOT NULL,               -- "" when the caller did not say
    user_agent    TEXT NOT NULL,               -- "" when absent
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (key_id, source_ip, user_agent)
);
