-- GB/T 28181 digest nonces, single-use: a nonce is inserted when the platform challenges a
-- REGISTER and deleted by the first REGISTER that answers it, so a captured REGISTER cannot be
-- replayed (after an unregistration or a restart, or on another signalling node). Rows whose
-- expiry passed unused are purged.
CREATE TABLE sip_nonces (
    nonce TEXT PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX sip_nonces_expiry ON sip_nonces(expires_at_ms);
