-- Dual control's approval requests (`[custodian] quorum`): what was asked, by whom, why, who
-- approved, until when, and when it was used (once). Each row carries its integrity tag;
-- every update is conditional on `revision`, so a request is spent once across nodes.
CREATE TABLE approvals (
    id               text COLLATE "C" PRIMARY KEY,
    action           text NOT NULL,
    resource         text NOT NULL,
    reason           text NOT NULL,
    requested_by     text NOT NULL,
    requester_counts boolean NOT NULL,
    approvers_json   text NOT NULL,         -- JSON array of principals, in order
    created_at_ms    bigint NOT NULL,
    expires_at_ms    bigint NOT NULL,
    used_at_ms       bigint,
    revision         bigint NOT NULL,
    mac              bytea NOT NULL
);
CREATE INDEX approvals_by_time ON approvals (created_at_ms);
