-- Rendered enforcement documents (PDF and Word), stored once as blobs with their digests so a
-- printed document can later be proven to be the one the system issued.
-- Append-only: never edit a migration that has shipped.

CREATE TABLE rendered_documents (
    number          TEXT NOT NULL,
    format          TEXT NOT NULL CHECK (format IN ('pdf','docx')),
    blob_key        TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    sm3             TEXT NOT NULL,
    rendered_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (number, format)
);
