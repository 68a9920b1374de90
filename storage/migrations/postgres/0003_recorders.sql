-- Body-worn recorders (GB/T 28181 devices) and the officer each is bound to. A bound recorder
-- reports for its officer (one officer, one marker); an unbound recorder is a unit of its own.
-- The GB/T 28181 issue extends this table with registration details.
CREATE TABLE recorders (
    device_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    org_unit_id   TEXT NOT NULL REFERENCES org_units(id),
    officer_id    TEXT UNIQUE REFERENCES officers(id) ON DELETE SET NULL,
    status        TEXT NOT NULL CHECK (status IN ('active','inactive')),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    version       BIGINT NOT NULL
);
CREATE INDEX recorders_org_unit ON recorders(org_unit_id);
