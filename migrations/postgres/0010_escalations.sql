-- Escalations: one per opening of a problem whose route escalates. `round` counts its starts
-- from the first step (an unacknowledgement, a hold that ended), `pass` and `step` name the next
-- step to send, due at `next_at_ms`; a step is sent by whichever instance moves them on
-- (a conditional update), and its runs' keys make sending it twice impossible.
CREATE TABLE escalations (
    id              BIGSERIAL PRIMARY KEY,
    source          TEXT    NOT NULL,
    problem_key     TEXT    NOT NULL,
    notification_id BIGINT  NOT NULL,
    policy          TEXT    NOT NULL,
    -- open (climbing), ended (every step sent, nobody answered), acked, resolved.
    state           TEXT    NOT NULL,
    round           BIGINT  NOT NULL,
    pass            BIGINT  NOT NULL,
    step            BIGINT  NOT NULL,
    next_at_ms      BIGINT,
    -- What holds it at its first step: a silence's id, maintenance:NAME.
    held_by         TEXT,
    code            TEXT    NOT NULL,
    started_at_ms   BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL,
    acked_at_ms     BIGINT,
    acked_by        TEXT,
    acked_via       TEXT
);
-- One escalation at a time per problem: a second opening notification starts none.
CREATE UNIQUE INDEX escalations_live ON escalations (source, problem_key)
    WHERE state IN ('open', 'ended', 'acked');
CREATE INDEX escalations_due ON escalations (next_at_ms) WHERE state = 'open';
CREATE INDEX escalations_code ON escalations (code) WHERE state IN ('open', 'ended');

-- Each step as it was sent: the timeline the problem page shows.
CREATE TABLE escalation_steps (
    escalation_id BIGINT  NOT NULL,
    round         BIGINT  NOT NULL,
    pass          BIGINT  NOT NULL,
    step          BIGINT  NOT NULL,
    started_at_ms BIGINT  NOT NULL,
    -- JSON: [{"person": "ana", "name": "Ana Lima"}, …]
    notified      TEXT    NOT NULL,
    -- JSON: ["text-person", …]
    actions       TEXT    NOT NULL,
    PRIMARY KEY (escalation_id, round, pass, step)
);

-- Keys hub makes once and every instance shares (the acknowledgement links' signing key).
CREATE TABLE hub_keys (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
