-- Work orders (工单) between the corps and the brigades: one sender unit, one or more recipient
-- units each with its own receive / reply / return / accept loop.
-- Append-only: never edit a migration that has shipped.

CREATE TABLE work_orders (
    id              TEXT PRIMARY KEY,
    number          TEXT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    from_unit_id    TEXT NOT NULL REFERENCES org_units(id),
    created_by      TEXT REFERENCES accounts(id),
    deadline_ms     INTEGER NOT NULL,
    attachments     TEXT NOT NULL DEFAULT '[]',
    status          TEXT NOT NULL CHECK (status IN ('open','closed')),
    close_note      TEXT,
    closed_at_ms    INTEGER,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
CREATE INDEX work_orders_from ON work_orders(from_unit_id, created_at_ms);

CREATE TABLE work_order_recipients (
    order_id        TEXT NOT NULL REFERENCES work_orders(id),
    unit_id         TEXT NOT NULL REFERENCES org_units(id),
    status          TEXT NOT NULL CHECK (status IN ('dispatched','received','replied','returned','accepted')),
    received_at_ms  INTEGER,
    reply           TEXT,
    reply_attachments TEXT NOT NULL DEFAULT '[]',
    replied_at_ms   INTEGER,
    returned_reason TEXT,
    accepted_at_ms  INTEGER,
    reminded_at_ms  INTEGER,
    reminders       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, unit_id)
);
CREATE INDEX work_order_recipients_unit ON work_order_recipients(unit_id, status);
