-- GB/T 28181 digest nonces, single-use without a row per challenge: nonces are stateless (an
-- HMAC and an issue time), and a row is inserted only when a REGISTER with a right digest uses
-- one (INSERT ... ON CONFLICT DO NOTHING: a conflict means used before, answered 401 stale).
-- Unauthenticated REGISTERs cost no write. Rows past the nonce's expiry are purged. The table of
-- issued nonces (0013) is no longer used.
CREATE TABLE sip_used_nonces (
    nonce TEXT PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX sip_used_nonces_expiry ON sip_used_nonces(expires_at_ms);
DROP TABLE sip_nonces;
