-- The groups a SigV4 credential's signer belongs to, as a JSON array of names: a request
-- signed with the credential (the AWS KMS-compatible API) is decided by the Cedar policies
-- as a token holder of that principal and these groups is. Set at creation, never changed.
-- Credentials stored before this migration get the default, `["service"]`; bound into the
-- row's integrity tag only when it differs, so the tags of existing rows stay valid.
ALTER TABLE credentials ADD COLUMN groups_json TEXT NOT NULL DEFAULT '["service"]';
