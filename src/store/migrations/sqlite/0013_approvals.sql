-- Dual control's approval requests (`[custodian] quorum`): what was asked, by whom, why, who
-- approved, until when, and when it was used (once). Each row carries its integrity tag;
-- every update is conditional on `revision`, so a request is spent once across nodes.
CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    action           TEXT NOT NULL,
    resource         TEXT NOT NULL,
    reason           TEXT NOT NULL,
    requested_by     TEXT NOT NULL,
    requester_counts INTEGER NOT NULL,      -- 1 when the requester is a custodian
    approvers_json   TEXT NOT NULL,         -- JSON array of principals, in order
    created_at_ms    INTEGER NOT NULL,
    expires_at_ms    INTEGER NOT NULL,
    used_at_ms       INTEGER,
    revision         INTEGER NOT NULL,
    mac              BLOB NOT NULL
);
CREATE INDEX approvals_by_time ON approvals (created_at_ms);
