-- GB/T 28181 registration details of recorders, their catalog channels and the history of
-- officer bindings. Passwords are kept only as digest HA1 values for the realm they were set in.
ALTER TABLE recorders ADD COLUMN model TEXT;
ALTER TABLE recorders ADD COLUMN channels BIGINT NOT NULL DEFAULT 1;
ALTER TABLE recorders ADD COLUMN sip_realm TEXT;
ALTER TABLE recorders ADD COLUMN sip_ha1_md5 TEXT;
ALTER TABLE recorders ADD COLUMN sip_ha1_sha256 TEXT;
ALTER TABLE recorders ADD COLUMN manufacturer TEXT;
ALTER TABLE recorders ADD COLUMN firmware TEXT;
ALTER TABLE recorders ADD COLUMN transport TEXT;
ALTER TABLE recorders ADD COLUMN remote_addr TEXT;
ALTER TABLE recorders ADD COLUMN registered_at_ms BIGINT;
ALTER TABLE recorders ADD COLUMN last_seen_at_ms BIGINT;

CREATE TABLE recorder_channels (
    device_id     TEXT NOT NULL REFERENCES recorders(device_id) ON DELETE CASCADE,
    channel_id    TEXT NOT NULL,
    name          TEXT,
    manufacturer  TEXT,
    model         TEXT,
    status        TEXT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, channel_id)
);

CREATE TABLE recorder_bindings (
    id            TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL REFERENCES recorders(device_id) ON DELETE CASCADE,
    officer_id    TEXT NOT NULL REFERENCES officers(id),
    bound_at_ms   BIGINT NOT NULL,
    unbound_at_ms BIGINT,
    bound_by      TEXT
);
CREATE INDEX recorder_bindings_device ON recorder_bindings(device_id, bound_at_ms);
CREATE INDEX recorder_bindings_officer ON recorder_bindings(officer_id, bound_at_ms);
-- Bindings made before this migration start their history now.
INSERT INTO recorder_bindings (id, device_id, officer_id, bound_at_ms, unbound_at_ms, bound_by)
SELECT 'migrated-' || device_id, device_id, officer_id, updated_at_ms, NULL, NULL FROM recorders WHERE officer_id IS NOT NULL;
