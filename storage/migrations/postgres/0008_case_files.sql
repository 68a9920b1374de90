-- Case files (案卷): the electronic case file of a case (PDF and images as blobs with digests),
-- the review rule set, and case-file reviews with per-rule findings.
-- Append-only: never edit a migration that has shipped.

CREATE TABLE case_file_items (
    id              TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL REFERENCES cases(id),
    filename        TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    blob_key        TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    sm3             TEXT NOT NULL,
    uploaded_by     TEXT REFERENCES accounts(id),
    uploaded_at_ms  BIGINT NOT NULL
);
CREATE INDEX case_file_items_case ON case_file_items(case_id, uploaded_at_ms);

CREATE TABLE review_rules (
    id              TEXT PRIMARY KEY,
    code            TEXT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    points          BIGINT NOT NULL CHECK (points > 0),
    active          BOOLEAN NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);
INSERT INTO review_rules (id, code, title, points, active, updated_at_ms) VALUES
    ('rr-01', 'R01', '立案审批手续完备，立案及时', 10, TRUE, 0),
    ('rr-02', 'R02', '违法事实清楚，证据确实充分', 20, TRUE, 0),
    ('rr-03', 'R03', '执法程序合法（告知、听证、集体讨论等）', 20, TRUE, 0),
    ('rr-04', 'R04', '适用法律法规正确', 15, TRUE, 0),
    ('rr-05', 'R05', '执法文书制作规范，要素齐全', 15, TRUE, 0),
    ('rr-06', 'R06', '行政处罚自由裁量适当', 10, TRUE, 0),
    ('rr-07', 'R07', '文书送达合法', 5, TRUE, 0),
    ('rr-08', 'R08', '案卷归档及时，材料完整', 5, TRUE, 0);

CREATE TABLE case_reviews (
    id              TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL REFERENCES cases(id),
    reviewer_id     TEXT REFERENCES accounts(id),
    total           BIGINT NOT NULL,
    max_total       BIGINT NOT NULL,
    grade           TEXT NOT NULL CHECK (grade IN ('excellent','qualified','unqualified')),
    exemplary       BOOLEAN NOT NULL,
    comment         TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL
);
CREATE INDEX case_reviews_case ON case_reviews(case_id, created_at_ms);
CREATE INDEX case_reviews_exemplary ON case_reviews(exemplary, created_at_ms);

CREATE TABLE case_review_findings (
    review_id       TEXT NOT NULL REFERENCES case_reviews(id),
    rule_id         TEXT NOT NULL REFERENCES review_rules(id),
    score           BIGINT NOT NULL,
    finding         TEXT NOT NULL,
    PRIMARY KEY (review_id, rule_id)
);
