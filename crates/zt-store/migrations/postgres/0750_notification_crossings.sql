-- Notifications of SLA crossings (issue 14; the twin of
-- migrations/sqlite/0750_notification_crossings.sql, which explains the column).
ALTER TABLE findings ADD COLUMN sla_notified smallint NOT NULL DEFAULT 0;
CREATE INDEX findings_sla ON findings (company_id, first_seen)
    WHERE resolved_at IS NULL AND sla_notified < 2;

-- Old news at the cost of one probe per subject (see the SQLite twin).
ALTER TABLE notification_rules ADD COLUMN revision bigint NOT NULL DEFAULT 0;
CREATE TABLE notification_rule_revisions (
    company_id uuid PRIMARY KEY,
    revision bigint NOT NULL
);
CREATE TABLE notification_subjects (
    company_id uuid NOT NULL,
    key text COLLATE "C" NOT NULL,
    revision bigint NOT NULL,
    PRIMARY KEY (company_id, key)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['notification_rule_revisions', 'notification_subjects'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY company_isolation ON %I '
            'USING (company_id = zt_current_company() '
            '       OR current_setting(''zerotrace.all_companies'', true) = ''on'') '
            'WITH CHECK (company_id = zt_current_company() '
            '       OR current_setting(''zerotrace.all_companies'', true) = ''on'')', t);
    END LOOP;
END
$$;
