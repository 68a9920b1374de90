-- Recordings (issue 6): what the recorder wrote from the stream hub, or what was imported from a
-- camera. A recording is one continuous take of one channel; its segments are self-contained
-- fragmented MP4 files in the blob store. Times: UTC ms for search, and each segment's span on
-- the recording's own 90 kHz timeline (0 = the recording's first frame at started_at_ms).
CREATE TABLE recordings (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    channel_id      TEXT NOT NULL,
    -- The officer the recorder was bound to when the recording started, and the org unit.
    officer_id      TEXT REFERENCES officers(id) ON DELETE SET NULL,
    org_unit_id     TEXT NOT NULL REFERENCES org_units(id),
    source          TEXT NOT NULL CHECK (source IN ('live','upload','device')),
    trigger_kind    TEXT NOT NULL CHECK (trigger_kind IN ('always','on_demand','dispatch_call','import')),
    status          TEXT NOT NULL CHECK (status IN ('recording','closed')),
    started_at_ms   INTEGER NOT NULL,
    ended_at_ms     INTEGER,
    video_codec     TEXT,
    audio_codec     TEXT,
    segment_count   INTEGER NOT NULL DEFAULT 0,
    bytes           INTEGER NOT NULL DEFAULT 0,
    -- The digest chain: the link after the last indexed segment (hex), and when the recording
    -- closed, the server's signature over the head.
    chain_link      TEXT NOT NULL,
    head_signature  TEXT,
    -- A reviewer's legal hold (recordings of open cases are held without it).
    held            BOOLEAN NOT NULL DEFAULT FALSE,
    hold_reason     TEXT,
    note            TEXT NOT NULL DEFAULT '',
    created_by      TEXT REFERENCES accounts(id),
    created_at_ms   INTEGER NOT NULL
);
CREATE INDEX recordings_started ON recordings(started_at_ms);
CREATE INDEX recordings_device ON recordings(device_id, started_at_ms);
CREATE INDEX recordings_officer ON recordings(officer_id, started_at_ms);
CREATE INDEX recordings_org ON recordings(org_unit_id, started_at_ms);
CREATE INDEX recordings_status ON recordings(status);

CREATE TABLE recording_segments (
    recording_id    TEXT NOT NULL REFERENCES recordings(id),
    seq             INTEGER NOT NULL,
    start_90k       INTEGER NOT NULL,
    end_90k         INTEGER NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    blob_key        TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    -- The init section's length (ftyp + moov): the HLS map is the file's first init_bytes.
    init_bytes      INTEGER NOT NULL,
    payload_bytes   INTEGER NOT NULL,
    video_codec     TEXT,
    audio_codec     TEXT,
    sha256          TEXT NOT NULL,
    sm3             TEXT NOT NULL,
    link            TEXT NOT NULL,
    PRIMARY KEY (recording_id, seq)
);
-- Seek: the segments of a recording that end after an instant, in order.
CREATE INDEX recording_segments_end ON recording_segments(recording_id, end_90k);

-- Recordings as evidence of inspections: linked by an officer or reviewer, or suggested by the
-- system (the officer was inside the enterprise's geofence while the inspection was open) until
-- a reviewer confirms or dismisses the suggestion.
CREATE TABLE recording_links (
    recording_id    TEXT NOT NULL REFERENCES recordings(id),
    inspection_id   TEXT NOT NULL REFERENCES inspections(id),
    state           TEXT NOT NULL CHECK (state IN ('linked','suggested','dismissed')),
    created_by      TEXT REFERENCES accounts(id),
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (recording_id, inspection_id)
);
CREATE INDEX recording_links_inspection ON recording_links(inspection_id, state);

-- Retention per org unit (days); units without a row inherit from the nearest ancestor that
-- has one, else the configured default (365).
CREATE TABLE recording_retention (
    org_unit_id     TEXT PRIMARY KEY REFERENCES org_units(id),
    days            INTEGER NOT NULL CHECK (days >= 1),
    updated_at_ms   INTEGER NOT NULL
);

-- Always-on recording per recorder: recorded whenever it is online.
ALTER TABLE recorders ADD COLUMN record_always BOOLEAN NOT NULL DEFAULT FALSE;

-- Imports note the file's digest: the same file is not imported twice.
CREATE INDEX recordings_note ON recordings(note);
