-- The groups a SigV4 credential's signer belongs to, as a JSON array of names: a request
-- signed with the credential (the AWS KMS-compatible API) is decided by the Cedar policies
-- as a token holder of that principal and these groups is. Set at creation, never changed.
-- Credentials stored before this migration get none (they were made to be verified by a
-- gateway, not to call this vault: giving them `service` now would let every one of them use
-- its principal's keys through the KMS-compatible API); bound into the row's integrity tag
-- only when not empty, so the tags of existing rows stay valid.
ALTER TABLE credentials ADD COLUMN groups_json TEXT NOT NULL DEFAULT '[]';
