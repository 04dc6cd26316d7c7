-- Which audit events close a group commit. A crash can leave at most one batch in the store
-- that the event file never took; the writer takes such rows back out only when they are
-- exactly one batch, and refuses anything more. Rows written before this column existed
-- each count as a batch of their own, so none of them can ever be taken back silently.
ALTER TABLE audit_events ADD COLUMN batch_end INTEGER NOT NULL DEFAULT 1;
