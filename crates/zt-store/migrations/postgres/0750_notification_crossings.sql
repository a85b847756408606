-- Notifications of SLA crossings (issue 14; the twin of
-- migrations/sqlite/0750_notification_crossings.sql, which explains the column).
ALTER TABLE findings ADD COLUMN sla_notified smallint NOT NULL DEFAULT 0;
CREATE INDEX findings_sla ON findings (company_id, first_seen)
    WHERE resolved_at IS NULL AND sla_notified < 2;
