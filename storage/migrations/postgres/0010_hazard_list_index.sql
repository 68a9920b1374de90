-- The workbench's hazard list ("open hazards needing action within N days", by re-inspection due
-- time) and its count read only this index: the order, the deadline filter and the id are in it,
-- so a district's few thousand open hazards are counted and paged without touching the table.
DROP INDEX hazards_org_due;
CREATE INDEX hazards_org_due ON hazards(org_unit_id, status, reinspection_due_ms, rectification_deadline_ms, id);
