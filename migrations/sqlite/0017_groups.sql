-- Groups: the problems a grouped route folds into one send. One open group per route and key;
-- its runs hang on its first member's notification (`notification_id`). `sends` counts the sends
-- made, and a send is recorded by one conditional update, so two instances never make it twice.
CREATE TABLE problem_groups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    route           TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    -- open, resolved (every member resolved and that was sent, or before any send).
    state           TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    problem_key     TEXT    NOT NULL,
    notification_id INTEGER NOT NULL,
    opened_at_ms    INTEGER NOT NULL,
    -- When the next send is due; NULL while nothing waits to be sent.
    next_send_at_ms INTEGER,
    last_sent_at_ms INTEGER,
    sends           INTEGER NOT NULL DEFAULT 0,
    resolved_at_ms  INTEGER
);
CREATE UNIQUE INDEX problem_groups_open ON problem_groups (route, key) WHERE state = 'open';
CREATE INDEX problem_groups_due ON problem_groups (next_send_at_ms) WHERE state = 'open';

CREATE TABLE group_members (
    group_id      INTEGER NOT NULL,
    source        TEXT    NOT NULL,
    problem_key   TEXT    NOT NULL,
    -- OPEN or RESOLVED: the member's latest state.
    state         TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    joined_at_ms  INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    -- The send that first carried it (1 for the first); NULL until one has.
    first_send    INTEGER,
    PRIMARY KEY (group_id, source, problem_key)
);
CREATE INDEX group_members_problem ON group_members (source, problem_key);
