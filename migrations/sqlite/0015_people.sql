-- API tokens: only the SHA-256 of each secret is kept; a token never has more than its person's
-- role, which is checked again at every use.
CREATE TABLE api_tokens (
    id            TEXT    PRIMARY KEY,
    person        TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);

-- Who is on call instead of the rotation, from one instant until another.
CREATE TABLE schedule_overrides (
    id            TEXT    PRIMARY KEY,
    schedule      TEXT    NOT NULL,
    person        TEXT    NOT NULL,
    from_ms       INTEGER NOT NULL,
    until_ms      INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    removed_at_ms INTEGER
);
CREATE INDEX schedule_overrides_live ON schedule_overrides (schedule, until_ms)
    WHERE removed_at_ms IS NULL;

-- Every change a person made: when, who, through what, from where. Never pruned.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    token_id  TEXT,
    verified  INTEGER NOT NULL,
    via       TEXT    NOT NULL,
    from_addr TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    detail    TEXT    NOT NULL
);
CREATE INDEX audit_at ON audit (at_ms);
