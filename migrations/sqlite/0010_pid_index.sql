-- The feed (`hub poll`, `/feed`) asks whether a notification named each of its problems, by
-- problem id and by PID: both by index, so a page of the feed reads a few rows of a million.
CREATE INDEX notifications_by_pid ON notifications (pid) WHERE pid IS NOT NULL;
