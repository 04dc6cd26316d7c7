-- The principal index cost about a quarter of the audit index's CPU (a second B-tree insert for
-- every event) and no filter used it: the listing walks events in (node, seq) order and its
-- optional conditions (`? IS NULL OR principal = ?`) cannot drive an index. Only the
-- compliance report's count per principal read it, and that report now sorts the table once.
DROP INDEX IF EXISTS audit_events_principal;
