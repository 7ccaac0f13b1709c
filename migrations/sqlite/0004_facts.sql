-- What each source read from a notification (title, severity, tags, link, entities), as JSON, so
-- routes and actions treat every source alike. Rows from before this column read their Dynatrace body.
ALTER TABLE notifications ADD COLUMN facts TEXT;
