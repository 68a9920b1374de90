-- Issue 20: retention decides and deletes in one guarded step (storage/src/retention.rs).
-- A retention run first marks the expired, unprotected recordings in one transaction
-- (delete_marked_at_ms); a hold or a link set afterwards clears the mark. Each marked recording
-- is then claimed under its row's write lock, re-checking the mark and every condition
-- (deleting_since_ms, after which holds and links are refused), and only then loses its files
-- and finally its rows.
ALTER TABLE recordings ADD COLUMN delete_marked_at_ms INTEGER;
ALTER TABLE recordings ADD COLUMN deleting_since_ms INTEGER;
-- The expiry query, per org unit and end time (each retention period queried on its own).
CREATE INDEX recordings_expiry ON recordings(org_unit_id, ended_at_ms) WHERE status = 'closed';
CREATE INDEX recordings_delete_marked ON recordings(delete_marked_at_ms) WHERE delete_marked_at_ms IS NOT NULL;
CREATE INDEX recordings_deleting ON recordings(deleting_since_ms) WHERE deleting_since_ms IS NOT NULL;
