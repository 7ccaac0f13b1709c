-- What an instance's received folder looked like when it last stopped cleanly: a start that finds
-- the folder and the store as they were skips comparing them file by file (seconds with a
-- million). Taken (deleted) at every start, so a crash leaves none and the next start checks in
-- full. Any instance's notification since then changes max_id, and so forces the full check.
CREATE TABLE folder_marks (
    instance     TEXT   PRIMARY KEY,
    folder       TEXT   NOT NULL,
    dir_mtime_ns BIGINT NOT NULL,
    dir_ctime_ns BIGINT NOT NULL,
    max_id       BIGINT NOT NULL
);
