-- What the dispatcher does after a notification is answered.
--
-- A plan is created in the notification's own transaction. Once the notification's enrichment has
-- finished (or none is needed), the plan is routed: one action run per (action, target), inserted with
-- its idempotency key. The key is unique, so a redelivery, a restart or a poll of a problem already
-- handled finds the run there and never starts a second one.
CREATE TABLE plans (
    notification_id INTEGER PRIMARY KEY REFERENCES notifications (id),
    status          TEXT    NOT NULL DEFAULT 'pending', -- pending | done
    updated_at_ms   INTEGER NOT NULL
);

CREATE INDEX plans_pending ON plans (status);

-- The enriched details, kept so that routing, actions and pages read them from the store.
ALTER TABLE enrichments ADD COLUMN details TEXT;

CREATE TABLE action_runs (
    id                 INTEGER PRIMARY KEY,
    notification_id    INTEGER NOT NULL REFERENCES notifications (id),
    -- source / problem / state / action / target: the same change never runs twice by accident.
    idem_key           TEXT    NOT NULL UNIQUE,
    source             TEXT    NOT NULL,
    problem_key        TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    action             TEXT    NOT NULL,
    -- What this run acts on: an impacted entity (script), a recipient (sms); empty for one run.
    target             TEXT    NOT NULL,
    -- The target as it may be shown (phone numbers masked).
    target_label       TEXT    NOT NULL,
    -- pending | running | succeeded | failed | held_back
    status             TEXT    NOT NULL DEFAULT 'pending',
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    last_error         TEXT,
    -- Set by `hub replay`: the next attempt is recorded as a manual one.
    manual             INTEGER NOT NULL DEFAULT 0,
    -- JSON: what the last attempt produced (exit code and output, message SID, HTTP status).
    outcome            TEXT,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
);

CREATE INDEX action_runs_due ON action_runs (status, next_attempt_at_ms);
CREATE INDEX action_runs_by_problem ON action_runs (source, problem_key, state);

-- Every attempt of every run, written before it starts and completed after it ends. An attempt left
-- without an end was in flight at a crash.
CREATE TABLE action_attempts (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL REFERENCES action_runs (id),
    number         INTEGER NOT NULL,
    manual         INTEGER NOT NULL DEFAULT 0,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    -- succeeded | transient | permanent | held_back | interrupted
    result         TEXT,
    detail         TEXT
);

CREATE INDEX action_attempts_by_run ON action_attempts (run_id);
