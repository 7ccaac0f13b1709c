-- Each action takes its own due runs, the most urgent first, then by due time: a slow or
-- saturated action's backlog never stands in front of another action's page. Runs stored before
-- this have the default level, P3. Runs whose lease ended are looked for per action too.
ALTER TABLE action_runs ADD COLUMN priority SMALLINT NOT NULL DEFAULT 3;
CREATE INDEX action_runs_action_due ON action_runs (action, priority, next_attempt_at_ms, id)
    WHERE status = 'pending';
CREATE INDEX action_runs_leased ON action_runs (action, lease_until_ms) WHERE status = 'running';
