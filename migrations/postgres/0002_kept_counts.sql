-- Counts the status page, the API and /metrics show, kept as rows change instead of counted by
-- scanning every notification and run at each request. Statement triggers add up what each
-- statement changed (one upsert per statement, however many rows) into rows spread over 16 slots
-- by the connection's process id, so instances and connections writing at once rarely wait for
-- one another's counter row. Readers add the slots up.

-- The chart's last 24 hours, and retention's old problems, by time rather than by a full scan.
CREATE INDEX notifications_by_time ON notifications (received_at_ms);

CREATE TABLE source_counts (
    source    TEXT     NOT NULL,
    slot      SMALLINT NOT NULL,
    received  BIGINT   NOT NULL DEFAULT 0,
    test      BIGINT   NOT NULL DEFAULT 0,
    duplicate BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (source, slot)
);

INSERT INTO source_counts (source, slot, received, test, duplicate)
SELECT source, 0, COUNT(*) FILTER (WHERE NOT is_test), COUNT(*) FILTER (WHERE is_test),
       COALESCE(SUM(duplicates), 0)
FROM notifications GROUP BY source;

CREATE TABLE run_counts (
    action TEXT     NOT NULL,
    bucket TEXT     NOT NULL,
    slot   SMALLINT NOT NULL,
    runs   BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (action, bucket, slot)
);

-- A run's status, with a pending run that was tried before counted as 'retrying'.
CREATE FUNCTION hub_run_bucket(status TEXT, attempts BIGINT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN status = 'pending' AND attempts > 0 THEN 'retrying' ELSE status END $$;

INSERT INTO run_counts (action, bucket, slot, runs)
SELECT action, hub_run_bucket(status, attempts), 0, COUNT(*) FROM action_runs GROUP BY 1, 2;

CREATE FUNCTION hub_count_slot() RETURNS SMALLINT LANGUAGE sql STABLE
AS $$ SELECT (pg_backend_pid() % 16)::SMALLINT $$;

-- A transition table is visible only to a trigger that names it, so each operation has its own.
CREATE FUNCTION hub_source_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO source_counts AS c (source, slot, received, test, duplicate)
    SELECT source, hub_count_slot(), COUNT(*) FILTER (WHERE NOT is_test),
           COUNT(*) FILTER (WHERE is_test), SUM(duplicates)
    FROM added GROUP BY source
    ON CONFLICT (source, slot) DO UPDATE SET received = c.received + excluded.received,
                                             test = c.test + excluded.test,
                                             duplicate = c.duplicate + excluded.duplicate;
    RETURN NULL;
END $$;

CREATE FUNCTION hub_source_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO source_counts AS c (source, slot, duplicate)
    SELECT a.source, hub_count_slot(), SUM(a.duplicates - b.duplicates)
    FROM after_rows a JOIN before_rows b ON b.id = a.id
    WHERE a.duplicates != b.duplicates
    GROUP BY a.source
    ON CONFLICT (source, slot) DO UPDATE SET duplicate = c.duplicate + excluded.duplicate;
    RETURN NULL;
END $$;

CREATE FUNCTION hub_source_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO source_counts AS c (source, slot, received, test, duplicate)
    SELECT source, hub_count_slot(), -COUNT(*) FILTER (WHERE NOT is_test),
           -COUNT(*) FILTER (WHERE is_test), -SUM(duplicates)
    FROM removed GROUP BY source
    ON CONFLICT (source, slot) DO UPDATE SET received = c.received + excluded.received,
                                             test = c.test + excluded.test,
                                             duplicate = c.duplicate + excluded.duplicate;
    RETURN NULL;
END $$;

CREATE TRIGGER source_counts_insert AFTER INSERT ON notifications
REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION hub_source_counts_insert();
CREATE TRIGGER source_counts_update AFTER UPDATE ON notifications
REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
FOR EACH STATEMENT EXECUTE FUNCTION hub_source_counts_update();
CREATE TRIGGER source_counts_delete AFTER DELETE ON notifications
REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION hub_source_counts_delete();

CREATE FUNCTION hub_run_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_counts AS c (action, bucket, slot, runs)
    SELECT action, hub_run_bucket(status, attempts), hub_count_slot(), COUNT(*)
    FROM added GROUP BY 1, 2
    ON CONFLICT (action, bucket, slot) DO UPDATE SET runs = c.runs + excluded.runs;
    RETURN NULL;
END $$;

CREATE FUNCTION hub_run_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_counts AS c (action, bucket, slot, runs)
    SELECT action, bucket, hub_count_slot(), SUM(n)
    FROM (SELECT action, hub_run_bucket(status, attempts) AS bucket, 1 AS n FROM after_rows
          UNION ALL
          SELECT action, hub_run_bucket(status, attempts), -1 FROM before_rows) d
    GROUP BY action, bucket HAVING SUM(n) != 0
    ON CONFLICT (action, bucket, slot) DO UPDATE SET runs = c.runs + excluded.runs;
    RETURN NULL;
END $$;

CREATE FUNCTION hub_run_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_counts AS c (action, bucket, slot, runs)
    SELECT action, hub_run_bucket(status, attempts), hub_count_slot(), -COUNT(*)
    FROM removed GROUP BY 1, 2
    ON CONFLICT (action, bucket, slot) DO UPDATE SET runs = c.runs + excluded.runs;
    RETURN NULL;
END $$;

CREATE TRIGGER run_counts_insert AFTER INSERT ON action_runs
REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION hub_run_counts_insert();
CREATE TRIGGER run_counts_update AFTER UPDATE ON action_runs
REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
FOR EACH STATEMENT EXECUTE FUNCTION hub_run_counts_update();
CREATE TRIGGER run_counts_delete AFTER DELETE ON action_runs
REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION hub_run_counts_delete();
