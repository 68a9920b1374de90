-- The audit log's hash chain (storage/src/audit_chain.rs). The sealing job appends one link per
-- committed audit row, in the order it seals them (position 1, 2, …; within one seal by
-- audit_log.seq), so a row that commits late is sealed at a later position and never missed.
-- Each seal's signed head is also exported outside the database (blob store, heads file).
CREATE TABLE audit_chain (
    position        INTEGER PRIMARY KEY,
    audit_seq       INTEGER NOT NULL UNIQUE,
    audit_id        TEXT NOT NULL,
    -- SM3(previous link ‖ position ‖ the row's canonical encoding), hex.
    link            TEXT NOT NULL,
    -- Short SM3 fingerprints of each column (diagnostics: which column changed), hex.
    column_digests  TEXT NOT NULL,
    seal_no         INTEGER NOT NULL
);

-- One row per seal: the head it signed (the same head is exported outside the database).
CREATE TABLE audit_seals (
    seal_no         INTEGER PRIMARY KEY,
    at_ms           INTEGER NOT NULL,
    first_position  INTEGER NOT NULL,
    last_position   INTEGER NOT NULL,
    -- The highest audit_log.seq sealed so far (cumulative).
    max_audit_seq   INTEGER NOT NULL,
    head_json       TEXT NOT NULL
);

CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
BEGIN SELECT RAISE(ABORT, 'audit_chain is append-only'); END;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
BEGIN SELECT RAISE(ABORT, 'audit_chain is append-only'); END;
CREATE TRIGGER audit_seals_no_update BEFORE UPDATE ON audit_seals
BEGIN SELECT RAISE(ABORT, 'audit_seals is append-only'); END;
CREATE TRIGGER audit_seals_no_delete BEFORE DELETE ON audit_seals
BEGIN SELECT RAISE(ABORT, 'audit_seals is append-only'); END;
