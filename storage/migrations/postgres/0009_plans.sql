-- Inspection plans (执法检查计划): monthly, quarterly and annual plans per org unit, with their
-- planned visits. A plan is drafted (by hand or generated as a proposal from the data), reviewed
-- inside the unit and published; publication gives the plan its number and every planned visit
-- its inspection code, which the inspection then carries (`plan_visits.inspection_id`).
-- Append-only: never edit a migration that has shipped.

CREATE TABLE plans (
    id              TEXT PRIMARY KEY,
    number          TEXT UNIQUE,
    org_unit_id     TEXT NOT NULL REFERENCES org_units(id),
    period_kind     TEXT NOT NULL CHECK (period_kind IN ('month','quarter','year')),
    period          TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    period_end_ms   BIGINT NOT NULL,
    title           TEXT NOT NULL,
    notes           TEXT NOT NULL DEFAULT '',
    target_visits   BIGINT NOT NULL DEFAULT 0 CHECK (target_visits >= 0),
    status          TEXT NOT NULL CHECK (status IN ('draft','review','published')),
    generated       BOOLEAN NOT NULL DEFAULT FALSE,
    return_reason   TEXT,
    submitted_by    TEXT REFERENCES accounts(id),
    submitted_at_ms BIGINT,
    reviewed_by     TEXT REFERENCES accounts(id),
    published_at_ms BIGINT,
    created_by      TEXT REFERENCES accounts(id),
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    version         BIGINT NOT NULL
);
CREATE UNIQUE INDEX plans_unit_period ON plans(org_unit_id, period);
CREATE INDEX plans_period ON plans(period_start_ms, period_end_ms);

CREATE TABLE plan_visits (
    id              TEXT PRIMARY KEY,
    plan_id         TEXT NOT NULL REFERENCES plans(id),
    enterprise_id   TEXT NOT NULL REFERENCES enterprises(id),
    reason          TEXT NOT NULL CHECK (reason IN ('hazard_recheck','key_unit','grade','manual')),
    hazard_id       TEXT REFERENCES hazards(id),
    note            TEXT NOT NULL DEFAULT '',
    inspection_code TEXT UNIQUE,
    inspection_id   TEXT UNIQUE REFERENCES inspections(id),
    created_at_ms   BIGINT NOT NULL,
    UNIQUE (plan_id, enterprise_id)
);
CREATE INDEX plan_visits_enterprise ON plan_visits(enterprise_id);
