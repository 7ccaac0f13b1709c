-- Every accepted notification, byte for byte. A notification is acknowledged only after the
-- transaction that inserts it has committed.
CREATE TABLE notifications (
    id             INTEGER PRIMARY KEY,
    source         TEXT    NOT NULL,
    problem_key    TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    pid            TEXT,
    title          TEXT,
    is_test        INTEGER NOT NULL,
    body           BLOB    NOT NULL,
    body_sha256    BLOB    NOT NULL,
    -- Name of its file in dir_received; unique so that two notifications never share a file.
    file_name      TEXT    NOT NULL UNIQUE,
    received_at_ms INTEGER NOT NULL,
    -- How many byte-identical redeliveries were answered without storing them again.
    duplicates     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, problem_key, state, body_sha256)
);

CREATE INDEX notifications_by_problem ON notifications (source, problem_key);
