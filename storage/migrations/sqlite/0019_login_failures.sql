-- Failed logins naming no account (issue 21 item 3): counted and locked like an account's
-- (`accounts.failed_attempts`, `locked_until_ms`), so that an unknown username is answered
-- exactly as a known one — attempts left, then locked — and probing reveals nothing. Keyed by a
-- keyed hash of the normalised name (what was typed is never stored: people type passwords
-- into the username field). Rows older than a day are purged as new failures arrive.
CREATE TABLE login_failures (
    name_key         TEXT PRIMARY KEY,
    failed_attempts  INTEGER NOT NULL,
    locked_until_ms  INTEGER,
    updated_at_ms    INTEGER NOT NULL
);
CREATE INDEX login_failures_updated ON login_failures(updated_at_ms);
