-- Enrichment of Dynatrace notifications from the Problems API, done after the answer. Created in the
-- same transaction as its notification, so a crash never loses one; pending rows are retried, also
-- after a restart.
CREATE TABLE enrichments (
    notification_id    INTEGER PRIMARY KEY REFERENCES notifications (id),
    status             TEXT    NOT NULL DEFAULT 'pending', -- pending | done | failed
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    last_error         TEXT,
    updated_at_ms      INTEGER NOT NULL
);

CREATE INDEX enrichments_due ON enrichments (status, next_attempt_at_ms);
