-- Row integrity (src/store/integrity.rs): every row whose fields decide who may do what, or
-- what a key does, carries `mac`, a tag over its bound fields and its revision under a
-- KEK-sealed key. A row whose tag does not check is never used. Applied only with the tagging
-- of the rows already stored, in one transaction (`SqliteStore::enable_row_integrity`).

ALTER TABLE caller_tokens ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE caller_tokens ADD COLUMN mac BLOB;
ALTER TABLE keys ADD COLUMN mac BLOB;
ALTER TABLE credentials ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credentials ADD COLUMN mac BLOB;
ALTER TABLE api_keys ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN mac BLOB;
ALTER TABLE api_key_hashes ADD COLUMN mac BLOB;
