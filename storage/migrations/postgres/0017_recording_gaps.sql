-- Issue 20: no silent gaps, no duplicates. A segment the blob store would not take (after the
-- recorder's bounded retries) is recorded as a gap of its recording, which is then incomplete:
-- its head is signed over the incomplete head message that names every gap, never as a whole
-- chain (storage/src/evidence.rs). Each gap is one missing span on the recording's timeline,
-- between the segments indexed before it (after_segments of them) and the next one.
ALTER TABLE recordings ADD COLUMN incomplete BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE recording_gaps (
    recording_id    TEXT NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    -- Segments indexed before the gap (the next indexed segment's seq).
    after_segments  BIGINT NOT NULL,
    -- The missing span, 90 kHz on the recording's timeline, and UTC ms.
    start_90k       BIGINT NOT NULL,
    end_90k         BIGINT NOT NULL,
    start_ms        BIGINT NOT NULL,
    end_ms          BIGINT NOT NULL,
    -- Why the segment was not stored (the last error), for operators.
    reason          TEXT NOT NULL,
    PRIMARY KEY (recording_id, start_90k)
);

-- Reconcile and the index find a segment by its digest: the same file is never indexed twice.
-- (Not unique: an index that held duplicates before this migration must still migrate.)
CREATE INDEX recording_segments_sha256 ON recording_segments(recording_id, sha256);
