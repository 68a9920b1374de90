-- Issue 19: a JT/T 808 terminal that already holds an auth code may not register again (0x0100)
-- unless an operator released it for re-binding. A refused attempt is recorded on the vehicle
-- (the last one, with how many there were) so the operator sees which terminal tried, when and
-- from where; the audit log gets at most one row a minute per terminal.
-- Released for one re-registration until this time (ms); cleared when the terminal re-registers.
ALTER TABLE vehicles ADD COLUMN rebind_until_ms BIGINT;
-- The last refused registration: when, from which address, and what the terminal said.
ALTER TABLE vehicles ADD COLUMN reregister_at_ms BIGINT;
ALTER TABLE vehicles ADD COLUMN reregister_addr TEXT;
ALTER TABLE vehicles ADD COLUMN reregister_terminal_id TEXT;
ALTER TABLE vehicles ADD COLUMN reregister_model TEXT;
ALTER TABLE vehicles ADD COLUMN reregister_manufacturer TEXT;
-- Refused attempts since the last successful registration.
ALTER TABLE vehicles ADD COLUMN reregister_count BIGINT NOT NULL DEFAULT 0;
-- When a refused attempt was last written to the audit log (at most once a minute).
ALTER TABLE vehicles ADD COLUMN reregister_audited_at_ms BIGINT;
