-- Live positions: vehicles and their JT/T 808 terminals, position history, geofences,
-- dispatch assignments and SOS alarms.

-- Enforcement vehicles. A vehicle is a dispatch unit; its JT/T 808 terminal is identified by the
-- phone number in the message header (stored without leading zeros, so the 12-digit 2013 form
-- and the 20-digit 2019 form of the same number match).
CREATE TABLE vehicles (
    id               TEXT PRIMARY KEY,
    plate            TEXT NOT NULL,
    org_unit_id      TEXT NOT NULL REFERENCES org_units(id),
    terminal_phone   TEXT UNIQUE,
    auth_code        TEXT,
    terminal_id      TEXT,
    terminal_model   TEXT,
    manufacturer     TEXT,
    registered_at_ms BIGINT,
    status           TEXT NOT NULL CHECK (status IN ('active','inactive')),
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    version          BIGINT NOT NULL
);
CREATE INDEX vehicles_org_unit ON vehicles(org_unit_id, plate);

-- Position history of every unit (vehicle id or officer id). Duplicates (same unit, device time
-- and source) are stored once. `flags`: 1 = implausible jump, 2 = zero fix, 4 = blind-area
-- backfill, 8 = older than the live position when it arrived.
CREATE TABLE positions (
    unit_id        TEXT NOT NULL,
    time_ms        BIGINT NOT NULL,
    source         TEXT NOT NULL,
    lat            DOUBLE PRECISION NOT NULL,
    lon            DOUBLE PRECISION NOT NULL,
    speed_kmh      DOUBLE PRECISION,
    heading_deg    DOUBLE PRECISION,
    altitude_m     DOUBLE PRECISION,
    accuracy_m     DOUBLE PRECISION,
    alarm_flags    BIGINT NOT NULL,
    flags          BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (unit_id, time_ms, source)
);

-- Geofences: district polygons, enterprise boundaries or radii, custom areas. `geometry` is a
-- GeoJSON Polygon or MultiPolygon (WGS-84); a circle uses the centre and radius columns instead.
CREATE TABLE geofences (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('district','enterprise','custom')),
    org_unit_id   TEXT NOT NULL REFERENCES org_units(id),
    enterprise_id TEXT REFERENCES enterprises(id),
    geometry      TEXT,
    center_lat    DOUBLE PRECISION,
    center_lon    DOUBLE PRECISION,
    radius_m      DOUBLE PRECISION,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CHECK ((geometry IS NOT NULL) OR (center_lat IS NOT NULL AND center_lon IS NOT NULL AND radius_m > 0))
);
CREATE INDEX geofences_enterprise ON geofences(enterprise_id);

-- Dispatch assignments: a unit sent to an enterprise or a point, its arrival and its release.
CREATE TABLE dispatch_assignments (
    id              TEXT PRIMARY KEY,
    unit_id         TEXT NOT NULL,
    enterprise_id   TEXT REFERENCES enterprises(id),
    target_name     TEXT NOT NULL,
    target_lat      DOUBLE PRECISION NOT NULL,
    target_lon      DOUBLE PRECISION NOT NULL,
    radius_m        DOUBLE PRECISION NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('assigned','on_scene','cleared')),
    assigned_by     TEXT NOT NULL,
    assigned_at_ms  BIGINT NOT NULL,
    arrived_at_ms   BIGINT,
    cleared_by      TEXT,
    cleared_at_ms   BIGINT
);
CREATE INDEX dispatch_assignments_unit ON dispatch_assignments(unit_id, assigned_at_ms);
CREATE INDEX dispatch_assignments_open ON dispatch_assignments(status);

-- SOS alarms: raised by a device, then acknowledged, handled and closed by operators.
CREATE TABLE sos_alarms (
    id                 TEXT PRIMARY KEY,
    unit_id            TEXT NOT NULL,
    unit_kind          TEXT NOT NULL,
    unit_name          TEXT NOT NULL,
    org_unit_id        TEXT NOT NULL,
    source             TEXT NOT NULL,
    raised_at_ms       BIGINT NOT NULL,
    lat                DOUBLE PRECISION,
    lon                DOUBLE PRECISION,
    status             TEXT NOT NULL CHECK (status IN ('raised','acknowledged','handled','closed')),
    acknowledged_by    TEXT,
    acknowledged_at_ms BIGINT,
    handled_by         TEXT,
    handled_at_ms      BIGINT,
    handle_note        TEXT,
    closed_by          TEXT,
    closed_at_ms       BIGINT,
    close_note         TEXT
);
CREATE INDEX sos_alarms_status ON sos_alarms(status, raised_at_ms);
CREATE INDEX sos_alarms_unit ON sos_alarms(unit_id, raised_at_ms);
