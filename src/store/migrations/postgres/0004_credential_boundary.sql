-- Where a credential's secret lives: `process` (sealed, opened into this process to derive
-- signing keys) or `hsm` (only inside the HSM; the first link of the SigV4 key chain runs
-- there). Rows stored before this migration are `process`. Bound into the row's integrity tag
-- only when `hsm`, so the tags of existing rows stay valid.
ALTER TABLE credentials ADD COLUMN boundary text NOT NULL DEFAULT 'process' CHECK (boundary IN ('process', 'hsm'));
