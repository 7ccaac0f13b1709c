-- Each attempt's one-line summary ("exit 0", "SMS to +49*****1111 sent (SM…)", the error), as the
-- action gave it: what a comment reports, instead of guessing from other actions' JSON.
ALTER TABLE action_runs ADD COLUMN summary TEXT;
