-- Notifications of SLA crossings (issue 14): each finding remembers the crossings it was told
-- of (0 none, 1 due soon, 2 overdue), marked in the transaction that writes the message, so a
-- finding notifies once per crossing however many processes scan. The twin of
-- migrations/postgres/0750_notification_crossings.sql.
ALTER TABLE findings ADD COLUMN sla_notified INTEGER NOT NULL DEFAULT 0;
-- the SLA pass: a company's open findings not yet told they are overdue, by first seen
CREATE INDEX findings_sla ON findings (company_id, first_seen)
    WHERE resolved_at IS NULL AND sla_notified < 2;

-- Old news at the cost of one probe per subject, not one per rule and subject: each company's
-- rules carry the revision of their last change (a counter per company), and each subject told
-- the revision its rules had then. A subject known at a revision no rule has passed since was
-- told to every rule that hears of it (a rule filtering by host tags is asked each time: which
-- hosts carry its tags changes).
ALTER TABLE notification_rules ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
CREATE TABLE notification_rule_revisions (
    company_id BLOB PRIMARY KEY NOT NULL,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE notification_subjects (
    company_id BLOB NOT NULL,
    -- event:subject:severity:kev (a changed severity is news to check again)
    key TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (company_id, key)
) WITHOUT ROWID;
