-- hub's tables on PostgreSQL: the same as on SQLite (see migrations/sqlite/, whose comments say what
-- each column is for), with the columns several instances need to share one queue.

CREATE TABLE notifications (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source         TEXT    NOT NULL,
    problem_key    TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    pid            TEXT,
    title          TEXT,
    is_test        BOOLEAN NOT NULL,
    body           BYTEA   NOT NULL,
    body_sha256    BYTEA   NOT NULL,
    -- Unique across instances: two notifications never share a file, even in a shared folder.
    file_name      TEXT    NOT NULL UNIQUE,
    received_at_ms BIGINT  NOT NULL,
    duplicates     BIGINT  NOT NULL DEFAULT 0,
    facts          TEXT,
    -- Dedup across instances: the same delivery posted to two at once is stored once.
    UNIQUE (source, problem_key, state, body_sha256)
);

CREATE TABLE enrichments (
    notification_id    BIGINT PRIMARY KEY REFERENCES notifications (id),
    status             TEXT   NOT NULL DEFAULT 'pending',
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    last_error         TEXT,
    updated_at_ms      BIGINT NOT NULL,
    details            TEXT
);

CREATE INDEX enrichments_due ON enrichments (status, next_attempt_at_ms);

CREATE TABLE plans (
    notification_id BIGINT PRIMARY KEY REFERENCES notifications (id),
    status          TEXT   NOT NULL DEFAULT 'pending',
    updated_at_ms   BIGINT NOT NULL
);

CREATE INDEX plans_pending ON plans (status);

CREATE TABLE action_runs (
    id                 BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id    BIGINT  NOT NULL REFERENCES notifications (id),
    idem_key           TEXT    NOT NULL UNIQUE,
    source             TEXT    NOT NULL,
    problem_key        TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    action             TEXT    NOT NULL,
    target             TEXT    NOT NULL,
    target_label       TEXT    NOT NULL,
    status             TEXT    NOT NULL DEFAULT 'pending',
    attempts           BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT  NOT NULL,
    last_error         TEXT,
    manual             BOOLEAN NOT NULL DEFAULT FALSE,
    outcome            TEXT,
    created_at_ms      BIGINT  NOT NULL,
    updated_at_ms      BIGINT  NOT NULL,
    summary            TEXT,
    -- The instance running it and until when its claim holds; renewed while the action runs.
    -- A running run whose lease has ended is taken over by another instance.
    instance           TEXT,
    lease_until_ms     BIGINT
);

CREATE INDEX action_runs_due ON action_runs (status, next_attempt_at_ms);
CREATE INDEX action_runs_by_problem ON action_runs (source, problem_key, state);

CREATE TABLE action_attempts (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id         BIGINT  NOT NULL REFERENCES action_runs (id),
    number         BIGINT  NOT NULL,
    manual         BOOLEAN NOT NULL DEFAULT FALSE,
    started_at_ms  BIGINT  NOT NULL,
    finished_at_ms BIGINT,
    result         TEXT,
    detail         TEXT,
    instance       TEXT
);

CREATE INDEX action_attempts_by_run ON action_attempts (run_id);

CREATE TABLE file_name_counters (
    stem TEXT   PRIMARY KEY,
    last BIGINT NOT NULL
);

-- Every instance that runs on this store: what the page's table of instances shows.
CREATE TABLE instances (
    name          TEXT   PRIMARY KEY,
    started_at_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);
