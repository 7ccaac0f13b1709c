-- The trace a notification belongs to, as the `traceparent` of the span that stored it; NULL when
-- traces were off. Its routing and its runs are spans of that trace, in whichever instance.
ALTER TABLE notifications ADD COLUMN trace_parent TEXT;
