-- The audit index as rows of lines: each row holds up to 512 consecutive events of one node
-- exactly as the event file holds them (`{"event":…,"mac":"…"}` lines), with the range of
-- their sequence numbers and times. One record per few hundred events instead of fifteen
-- bound columns and an index entry per event: the store's share of an event's cost was
-- most of the audit's. Queries skip rows by time range and parse the lines of the rest.
--
-- The events of `audit_events` (one row per event) are moved into this table by the store
-- at open, a few thousand per transaction, and that table is then dropped (see
-- `move_legacy_events` in src/store/sqlite/audit.rs).
CREATE TABLE audit_batches (
    node        TEXT NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    time_min    TEXT NOT NULL,    -- lowest and highest event time: fixed-width RFC 3339 UTC
    time_max    TEXT NOT NULL,    -- (ms), which sorts as text
    ends_append INTEGER NOT NULL, -- 1 on the last row of an append (a batch end)
    lines       BLOB NOT NULL,
    PRIMARY KEY (node, first_seq)
);
