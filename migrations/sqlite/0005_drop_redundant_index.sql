-- The unique key (source, problem_key, state, body_sha256) already serves every lookup by
-- (source, problem_key); a second index on that prefix only cost each notification one more
-- index insert (and more pages written per commit).
DROP INDEX IF EXISTS notifications_by_problem;
