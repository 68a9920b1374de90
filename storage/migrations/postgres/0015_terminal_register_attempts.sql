-- Issue 19 (review): a release for re-binding names ONE refused registration attempt the
-- operator approved, by the terminal id it gave and the source IP it came from; only a
-- registration with both gets the new auth code. Refused attempts are kept as separate rows per
-- (vehicle, terminal id, source IP) — at most the latest 20 per vehicle — so that one terminal
-- retrying cannot hide another.
CREATE TABLE terminal_register_attempts (
    id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL REFERENCES vehicles(id) ON DELETE CASCADE,
    terminal_id TEXT NOT NULL,
    -- The source IP (IPv6 as written, IPv4-mapped addresses as IPv4), without the port.
    source_ip TEXT NOT NULL,
    -- The last attempt's full source address (ip:port).
    last_addr TEXT NOT NULL,
    model TEXT NOT NULL,
    manufacturer TEXT NOT NULL,
    first_at_ms BIGINT NOT NULL,
    last_at_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 1,
    UNIQUE (vehicle_id, terminal_id, source_ip)
);
CREATE INDEX terminal_register_attempts_vehicle ON terminal_register_attempts (vehicle_id, last_at_ms);
-- The approved attempt of a release (rebind_until_ms): both must match.
ALTER TABLE vehicles ADD COLUMN rebind_terminal_id TEXT;
ALTER TABLE vehicles ADD COLUMN rebind_source_ip TEXT;
-- A release made before this migration named no attempt: it no longer lets anything through.
UPDATE vehicles SET rebind_until_ms = NULL;
