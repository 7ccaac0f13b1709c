-- The queues are read by what is still to do, in the order it is done. An index on the status
-- alone let the planner walk the whole table in key order and filter out the rows already done:
-- with 20,000 notifications stored, the dispatcher's look for plans took 36 ms. Partial indexes
-- hold only the rows still to do, in the order they are taken, and stay small however much is
-- stored.
DROP INDEX plans_pending;
CREATE INDEX plans_pending ON plans (notification_id) WHERE status = 'pending';

DROP INDEX enrichments_due;
CREATE INDEX enrichments_due ON enrichments (next_attempt_at_ms, notification_id)
    WHERE status = 'pending';
