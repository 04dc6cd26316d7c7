-- Where a key's material came from: `generated` inside the vault, or `imported`. A version
-- may be imported only into an imported key (no takeover of a generated key by import).
-- Keys stored before this migration count as generated (the safe reading: nothing can be
-- imported into them). Bound into the row's integrity tag only when `imported`, so the tags
-- of existing rows stay valid.
ALTER TABLE keys ADD COLUMN origin TEXT NOT NULL DEFAULT 'generated' CHECK (origin IN ('generated', 'imported'));
