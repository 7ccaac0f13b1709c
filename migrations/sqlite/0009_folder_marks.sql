-- What the received folder looked like when hub last stopped cleanly: a start that finds the
-- folder and the store as they were skips comparing them file by file (seconds with a million).
-- Taken (deleted) at every start, so a crash leaves none and the next start checks in full.
CREATE TABLE folder_marks (
    instance     TEXT    PRIMARY KEY,
    folder       TEXT    NOT NULL,
    dir_mtime_ns INTEGER NOT NULL,
    dir_ctime_ns INTEGER NOT NULL,
    max_id       INTEGER NOT NULL
);
