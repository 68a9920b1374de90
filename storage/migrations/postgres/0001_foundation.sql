-- Foundation schema (PostgreSQL). Append-only: never edit a migration that has shipped.
-- Times are BIGINT milliseconds since the Unix epoch, UTC (`*_at_ms`).

CREATE TABLE org_units (
    id          TEXT PRIMARY KEY,
    parent_id   TEXT REFERENCES org_units(id),
    kind        TEXT NOT NULL CHECK (kind IN ('corps','brigade','squad','town','soe_group')),
    name        TEXT NOT NULL,
    code        TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX org_units_parent ON org_units(parent_id);

-- Transitive closure of the org tree (every unit is its own ancestor at depth 0).
CREATE TABLE org_unit_closure (
    ancestor_id   TEXT NOT NULL REFERENCES org_units(id),
    descendant_id TEXT NOT NULL REFERENCES org_units(id),
    depth         BIGINT NOT NULL,
    PRIMARY KEY (ancestor_id, descendant_id)
);
CREATE INDEX org_unit_closure_desc ON org_unit_closure(descendant_id);

CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL,
    org_unit_id     TEXT NOT NULL REFERENCES org_units(id),
    status          TEXT NOT NULL CHECK (status IN ('active','disabled')),
    must_change_password BOOLEAN NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    locked_until_ms BIGINT,
    last_login_at_ms BIGINT,
    password_changed_at_ms BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);
CREATE INDEX accounts_org_unit ON accounts(org_unit_id);

CREATE TABLE account_applications (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL,
    org_unit_id     TEXT NOT NULL REFERENCES org_units(id),
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending','approved','rejected')),
    applicant_id    TEXT NOT NULL REFERENCES accounts(id),
    decided_by_id   TEXT REFERENCES accounts(id),
    decision_reason TEXT,
    account_id      TEXT REFERENCES accounts(id),
    created_at_ms   BIGINT NOT NULL,
    decided_at_ms   BIGINT
);
CREATE INDEX account_applications_status ON account_applications(status, created_at_ms);

CREATE TABLE sessions (
    token_hash      TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    wall_screen     BOOLEAN NOT NULL,
    ip              TEXT,
    user_agent      TEXT,
    created_at_ms   BIGINT NOT NULL,
    last_seen_at_ms BIGINT NOT NULL,
    ended_at_ms     BIGINT,
    end_reason      TEXT
);
CREATE INDEX sessions_account ON sessions(account_id, ended_at_ms);

CREATE TABLE audit_log (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    at_ms        BIGINT NOT NULL,
    account_id   TEXT,
    username     TEXT,
    action       TEXT NOT NULL,
    target_kind  TEXT,
    target_id    TEXT,
    ip           TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('success','failure','denied')),
    details      TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at_ms);
CREATE INDEX audit_log_account ON audit_log(account_id, at_ms);
CREATE INDEX audit_log_action ON audit_log(action, at_ms);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE enterprises (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    uscc                 TEXT NOT NULL UNIQUE,
    district_id          TEXT NOT NULL REFERENCES org_units(id),
    town_id              TEXT REFERENCES org_units(id),
    soe_group_id         TEXT REFERENCES org_units(id),
    address              TEXT NOT NULL,
    lon                  DOUBLE PRECISION,
    lat                  DOUBLE PRECISION,
    legal_representative TEXT NOT NULL,
    principal_name       TEXT NOT NULL,
    principal_phone      TEXT NOT NULL,
    ownership_type       TEXT NOT NULL,
    industry_code        TEXT NOT NULL,
    sector               TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('operating','suspended','closed')),
    tags                 TEXT NOT NULL,
    search_text          TEXT NOT NULL,
    created_at_ms        BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    version              BIGINT NOT NULL
);
CREATE INDEX enterprises_district ON enterprises(district_id, name);
CREATE INDEX enterprises_town ON enterprises(town_id);
CREATE INDEX enterprises_soe ON enterprises(soe_group_id);
CREATE INDEX enterprises_name ON enterprises(name);
CREATE INDEX enterprises_updated ON enterprises(updated_at_ms);

CREATE TABLE enterprise_key_units (
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    year          BIGINT NOT NULL,
    PRIMARY KEY (enterprise_id, year)
);
CREATE INDEX enterprise_key_units_year ON enterprise_key_units(year);

-- Character bigram index for substring search of Chinese text (any length >= 2; 1-char queries scan).
-- The name is copied in so that a search sorted by name reads its first page straight off the
-- index (gram, name, enterprise_id) and counts matches without touching the enterprise rows.
CREATE TABLE enterprise_grams (
    gram          TEXT NOT NULL,
    name          TEXT NOT NULL,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    PRIMARY KEY (gram, name, enterprise_id)
);
CREATE INDEX enterprise_grams_enterprise ON enterprise_grams(enterprise_id);

CREATE TABLE officers (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    certificate_no TEXT NOT NULL UNIQUE,
    org_unit_id    TEXT NOT NULL REFERENCES org_units(id),
    phone          TEXT NOT NULL,
    account_id     TEXT UNIQUE REFERENCES accounts(id),
    status         TEXT NOT NULL CHECK (status IN ('active','inactive')),
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    version        BIGINT NOT NULL
);
CREATE INDEX officers_org_unit ON officers(org_unit_id, name);

CREATE TABLE inspection_items (
    id             TEXT PRIMARY KEY,
    code           TEXT NOT NULL UNIQUE,
    sector         TEXT NOT NULL,
    category       TEXT NOT NULL,
    title          TEXT NOT NULL,
    legal_basis    TEXT NOT NULL,
    source         TEXT NOT NULL,
    effective_date TEXT NOT NULL,
    active         BOOLEAN NOT NULL,
    builtin        BOOLEAN NOT NULL,
    version        BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE inspection_item_history (
    item_id       TEXT NOT NULL REFERENCES inspection_items(id),
    version       BIGINT NOT NULL,
    snapshot      TEXT NOT NULL,
    changed_by    TEXT,
    changed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (item_id, version)
);
