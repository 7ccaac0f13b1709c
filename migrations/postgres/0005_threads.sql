-- What an action created far away for a problem (a chat message, a mail, a paging incident), so
-- that its later runs for the same problem continue it instead of starting another. Written in
-- the same transaction as the run's outcome.
CREATE TABLE threads (
    source        TEXT    NOT NULL,
    problem_key   TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    -- Slack's channel/ts, a mail's Message-ID, PagerDuty's dedup_key, a webhook's or script's value.
    ref           TEXT    NOT NULL,
    -- Where people can open it, when the kind has such a place.
    url           TEXT,
    -- The run that last set it.
    run_id        BIGINT  NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (source, problem_key, action, target)
);
