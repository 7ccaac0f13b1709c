-- One row that hub rewrites once a second while the last commit failed (a full disk): the first
-- write that commits again turns /healthz healthy with no notification needed.
CREATE TABLE write_probe (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms INTEGER NOT NULL
);
