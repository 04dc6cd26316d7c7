-- Two settings of a key that Vault's Transit engine has too (`POST /v1/transit/keys/{name}/config`):
-- `min_encryption_version`, the oldest version a caller may still ask to sign or encrypt with
-- (0: any version from min_verify_version; the default is always the latest), and
-- `deletion_allowed`, without which a key cannot be scheduled for deletion. Keys stored
-- before this migration keep what they had: every version usable, deletion allowed. Bound
-- into the row's integrity tag only when either differs from that, so the tags of existing
-- rows stay valid.
ALTER TABLE keys ADD COLUMN min_encryption_version INTEGER NOT NULL DEFAULT 0 CHECK (min_encryption_version >= 0);
ALTER TABLE keys ADD COLUMN deletion_allowed INTEGER NOT NULL DEFAULT 1 CHECK (deletion_allowed IN (0, 1));
