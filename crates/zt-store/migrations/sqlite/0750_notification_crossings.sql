-- Notifications of SLA crossings (issue 14): each finding remembers the crossings it was told
-- of (0 none, 1 due soon, 2 overdue), marked in the transaction that writes the message, so a
-- finding notifies once per crossing however many processes scan. The twin of
-- migrations/postgres/0750_notification_crossings.sql.
ALTER TABLE findings ADD COLUMN sla_notified INTEGER NOT NULL DEFAULT 0;
-- the SLA pass: a company's open findings not yet told they are overdue, by first seen
CREATE INDEX findings_sla ON findings (company_id, first_seen)
    WHERE resolved_at IS NULL AND sla_notified < 2;
