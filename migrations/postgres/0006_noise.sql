-- Silences: runs they cover are recorded `silenced` and never run; when a silence ends, the
-- runs of problems still open in the same state run then (unless added with no renotify).
CREATE TABLE silences (
    id            TEXT    PRIMARY KEY,
    -- JSON: [{"key": "tag", "value": "env:prod"}, …]; all must match.
    matchers      TEXT    NOT NULL,
    starts_at_ms  BIGINT  NOT NULL,
    ends_at_ms    BIGINT  NOT NULL,
    comment       TEXT    NOT NULL,
    author        TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    -- Set when someone ended it before ends_at_ms.
    expired_at_ms BIGINT,
    renotify      BOOLEAN NOT NULL,
    -- Set once its end was handled (its runs released or let go).
    settled_at_ms BIGINT
);
CREATE INDEX silences_unsettled ON silences (ends_at_ms) WHERE settled_at_ms IS NULL;

-- What holds a run back: a silence's id, `maintenance:<name>`, or `wait` (a route's flap wait).
ALTER TABLE action_runs ADD COLUMN held_by TEXT;
CREATE INDEX action_runs_held ON action_runs (held_by) WHERE held_by IS NOT NULL;

-- Heartbeats: when each last beat, shared by every instance on the store.
CREATE TABLE heartbeats (
    name         TEXT    PRIMARY KEY,
    last_beat_ms BIGINT  NOT NULL
);
