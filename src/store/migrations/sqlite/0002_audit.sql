-- The audit trail's queryable sink. Each row is one event of one node's keyed chain; the
-- MAC covers the event's canonical encoding (src/audit/event.rs), so any edit of a column
-- is detected by verification. Rows are only ever appended (and, for a batch that failed
-- to reach every sink, removed again before anything was acknowledged).

CREATE TABLE audit_events (
    node        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    time        TEXT NOT NULL,        -- fixed-width RFC 3339 UTC (ms): sorts as text, and is
                                      -- covered by the MAC, so time filters see MAC'd data
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

CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_principal ON audit_events (principal, time);
