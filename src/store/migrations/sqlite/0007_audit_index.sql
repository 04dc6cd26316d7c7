-- The audit table is an index of the event file, filled in large batches off the request
-- path; every B-tree a row goes into costs throughput. Rows are clustered on (node, seq)
-- (WITHOUT ROWID: one B-tree for the table and its key instead of two), and only the
-- principal filter (and the report's count per principal) keeps an index of its own. A time
-- filter without a principal walks the node's events in sequence order, which is also time
-- order to within the few milliseconds between taking an event's time and chaining it.
CREATE TABLE audit_events_clustered (
    node        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
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
    batch_end   INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;

INSERT INTO audit_events_clustered
    SELECT node, seq, time, request_id, principal, action, resource, key_version, decision, policy,
           outcome, source_ip, user_agent, secret_hmac, mac, batch_end
    FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_clustered RENAME TO audit_events;
CREATE INDEX audit_events_principal ON audit_events (principal, time);
