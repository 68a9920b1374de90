-- Daily enforcement work: inspect-once caps, inspections, hazards and their rectification loop,
-- cases with their documents. Append-only: never edit a migration that has shipped.
-- Times are BIGINT milliseconds since the Unix epoch, UTC (`*_at_ms`); money in fen (cents).

-- Supervision grade (分类分级): an editable field until a grading model exists.
ALTER TABLE enterprises ADD COLUMN supervision_grade TEXT NOT NULL DEFAULT 'C'
    CHECK (supervision_grade IN ('A','B','C','D'));

-- Legal deadlines, from a table rather than code (DOMAIN.md "Deadlines").
CREATE TABLE deadline_rules (
    step        TEXT PRIMARY KEY,
    days        BIGINT NOT NULL CHECK (days > 0),
    name        TEXT NOT NULL,
    source      TEXT NOT NULL
);
INSERT INTO deadline_rules (step, days, name, source) VALUES
    ('case_decision', 90, '立案后作出处理决定', 'Administrative Penalty Law 2021 art. 60'),
    ('reinspection', 10, '整改期满或申请后复查', 'MEM penalty measures (order No. 18)'),
    ('evidence_preservation', 7, '先行登记保存证据处理决定', 'Administrative Penalty Law'),
    ('service_absent', 7, '当事人不在场时送达决定书', 'Administrative Penalty Law'),
    ('hearing_request', 5, '告知后申请听证', 'Administrative Penalty Law 2021'),
    ('fine_payment', 15, '缴纳罚款', 'Administrative Penalty Law');

-- Inspect-once (综合查一次): yearly visits per enterprise by sector and supervision grade.
CREATE TABLE inspection_caps (
    sector      TEXT NOT NULL,
    grade       TEXT NOT NULL CHECK (grade IN ('A','B','C','D')),
    yearly_cap  BIGINT NOT NULL CHECK (yearly_cap >= 0),
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (sector, grade)
);
INSERT INTO inspection_caps (sector, grade, yearly_cap, updated_at_ms) VALUES
    ('01','A',4,0),('01','B',6,0),('01','C',8,0),('01','D',12,0),
    ('02','A',2,0),('02','B',4,0),('02','C',6,0),('02','D',8,0),
    ('03','A',2,0),('03','B',4,0),('03','C',8,0),('03','D',12,0),
    ('04','A',2,0),('04','B',4,0),('04','C',6,0),('04','D',8,0),
    ('05','A',1,0),('05','B',2,0),('05','C',3,0),('05','D',4,0),
    ('06','A',1,0),('06','B',1,0),('06','C',2,0),('06','D',3,0);

-- Sequence counters of document numbers and codes, one per prefix (type, unit, year).
CREATE TABLE doc_counters (
    prefix      TEXT PRIMARY KEY,
    next        BIGINT NOT NULL
);

CREATE TABLE inspections (
    id              TEXT PRIMARY KEY,
    code            TEXT NOT NULL UNIQUE,
    org_unit_id     TEXT NOT NULL REFERENCES org_units(id),
    enterprise_id   TEXT NOT NULL REFERENCES enterprises(id),
    kind            TEXT NOT NULL CHECK (kind IN ('planned','complaint','referral','triggered')),
    status          TEXT NOT NULL CHECK (status IN ('in_progress','completed','cancelled')),
    year            BIGINT NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    completed_at_ms BIGINT,
    record_number   TEXT UNIQUE,
    summary         TEXT NOT NULL DEFAULT '',
    cancel_reason   TEXT,
    over_cap        BOOLEAN NOT NULL DEFAULT FALSE,
    created_by      TEXT REFERENCES accounts(id),
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    version         BIGINT NOT NULL
);
CREATE INDEX inspections_org ON inspections(org_unit_id, started_at_ms);
CREATE INDEX inspections_enterprise ON inspections(enterprise_id, year);
CREATE INDEX inspections_started ON inspections(started_at_ms);

CREATE TABLE inspection_officers (
    inspection_id   TEXT NOT NULL REFERENCES inspections(id),
    officer_id      TEXT NOT NULL REFERENCES officers(id),
    PRIMARY KEY (inspection_id, officer_id)
);
CREATE INDEX inspection_officers_officer ON inspection_officers(officer_id);

CREATE TABLE inspection_results (
    inspection_id   TEXT NOT NULL REFERENCES inspections(id),
    item_id         TEXT NOT NULL REFERENCES inspection_items(id),
    result          TEXT NOT NULL CHECK (result IN ('pass','hazard','not_applicable')),
    note            TEXT NOT NULL DEFAULT '',
    photo_keys      TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (inspection_id, item_id)
);

CREATE TABLE over_cap_filings (
    id              TEXT PRIMARY KEY,
    inspection_id   TEXT NOT NULL UNIQUE REFERENCES inspections(id),
    enterprise_id   TEXT NOT NULL REFERENCES enterprises(id),
    supervising_unit_id TEXT NOT NULL REFERENCES org_units(id),
    reason          TEXT NOT NULL,
    visits_before   BIGINT NOT NULL,
    yearly_cap      BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending','acknowledged')),
    filed_by        TEXT REFERENCES accounts(id),
    filed_at_ms     BIGINT NOT NULL,
    acknowledged_by TEXT REFERENCES accounts(id),
    acknowledged_at_ms BIGINT
);
CREATE INDEX over_cap_filings_unit ON over_cap_filings(supervising_unit_id, status);

CREATE TABLE hazards (
    id              TEXT PRIMARY KEY,
    inspection_id   TEXT NOT NULL REFERENCES inspections(id),
    enterprise_id   TEXT NOT NULL REFERENCES enterprises(id),
    org_unit_id     TEXT NOT NULL REFERENCES org_units(id),
    item_id         TEXT REFERENCES inspection_items(id),
    level           TEXT NOT NULL CHECK (level IN ('general','major')),
    description     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('rectifying','rectified','closed','escalated')),
    order_number    TEXT NOT NULL UNIQUE,
    found_at_ms     BIGINT NOT NULL,
    rectification_deadline_ms BIGINT NOT NULL,
    reinspection_due_ms BIGINT NOT NULL,
    rectification_note TEXT,
    rectification_evidence TEXT NOT NULL DEFAULT '[]',
    rectified_at_ms BIGINT,
    reinspection_result TEXT CHECK (reinspection_result IN ('passed','failed')),
    reinspection_note TEXT,
    reinspection_number TEXT UNIQUE,
    reinspected_by  TEXT REFERENCES accounts(id),
    reinspected_at_ms BIGINT,
    closed_at_ms    BIGINT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    version         BIGINT NOT NULL
);
CREATE INDEX hazards_org_due ON hazards(org_unit_id, status, reinspection_due_ms);
CREATE INDEX hazards_enterprise ON hazards(enterprise_id);
CREATE INDEX hazards_inspection ON hazards(inspection_id);
CREATE INDEX hazards_due ON hazards(status, reinspection_due_ms);

CREATE TABLE cases (
    id              TEXT PRIMARY KEY,
    number          TEXT UNIQUE,
    org_unit_id     TEXT NOT NULL REFERENCES org_units(id),
    enterprise_id   TEXT NOT NULL REFERENCES enterprises(id),
    title           TEXT NOT NULL,
    violation       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('filing_review','open','closing_review','closed','not_filed')),
    responsible_person TEXT NOT NULL DEFAULT '',
    -- SM4-GCM sealed (see storage::crypto): never plain text in the database.
    party_id_sealed TEXT,
    party_phone_sealed TEXT,
    proposed_fine_sealed TEXT,
    company_fine_cents BIGINT,
    person_fine_cents BIGINT,
    decision_number TEXT,
    decided_at_ms   BIGINT,
    payment_due_ms  BIGINT,
    paid_cents      BIGINT,
    paid_at_ms      BIGINT,
    criminal_referral BOOLEAN NOT NULL DEFAULT FALSE,
    referral_note   TEXT,
    filed_by        TEXT REFERENCES accounts(id),
    filed_at_ms     BIGINT NOT NULL,
    filing_decided_by TEXT REFERENCES accounts(id),
    filing_decided_at_ms BIGINT,
    decision_due_ms BIGINT,
    closing_requested_at_ms BIGINT,
    closed_by       TEXT REFERENCES accounts(id),
    closed_at_ms    BIGINT,
    decision_reason TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    version         BIGINT NOT NULL
);
CREATE INDEX cases_org ON cases(org_unit_id, status, filed_at_ms);
CREATE INDEX cases_status ON cases(status, filed_at_ms);
CREATE INDEX cases_enterprise ON cases(enterprise_id);

CREATE TABLE case_inspections (
    case_id         TEXT NOT NULL REFERENCES cases(id),
    inspection_id   TEXT NOT NULL REFERENCES inspections(id),
    PRIMARY KEY (case_id, inspection_id)
);
CREATE INDEX case_inspections_inspection ON case_inspections(inspection_id);

CREATE TABLE case_documents (
    id              TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL REFERENCES cases(id),
    doc_type        TEXT NOT NULL,
    number          TEXT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    content         TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL CHECK (status IN ('draft','approved')),
    created_by      TEXT REFERENCES accounts(id),
    created_at_ms   BIGINT NOT NULL,
    approved_by     TEXT REFERENCES accounts(id),
    approved_at_ms  BIGINT
);
CREATE INDEX case_documents_case ON case_documents(case_id, created_at_ms);
