-- The audit trail's queryable sink. Each row is one event of one node's keyed chain; the
-- MAC covers the event's canonical encoding (src/audit/event.rs), so any edit of a column
-- is detected by verification. Rows are only ever appended (and, for a batch that failed
-- to reach every sink, removed again before anything was acknowledged).

CREATE TABLE audit_events (
    node        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,     -- `time` as Unix milliseconds, for range queries
    time        TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    principal   TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    key_version INTEGER,
    decision    TEXT NOT NULL,
    policy      TEXT,
    outcome     TEXT NOT NULL,
    source_ip   TEXT,
    user_agent  TEXT,
    secret_hmac TEXT,
    mac         BLOB NOT NULL,
    PRIMARY KEY (node, seq)
);

CREATE INDEX audit_events_time ON audit_events (time_ms);
CREATE INDEX audit_events_principal ON audit_events (principal, time_ms);
