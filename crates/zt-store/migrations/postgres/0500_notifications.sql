-- Notifications (issue 14; DESIGN.md "Notifications"; the twin of
-- migrations/sqlite/0500_notifications.sql, which explains the tables).
--
-- Rules, outbox and delivery log carry row-level security like `events`: a company's
-- transactions see their own rows; the dispatchers, which serve every company, say
-- `zerotrace.all_companies = on`. `notification_keys` holds rule ids and subject keys only.

CREATE TABLE notification_rules (
    company_id uuid NOT NULL,
    rule_id uuid NOT NULL,
    name text NOT NULL,
    events text NOT NULL,
    min_severity text,
    kev_only boolean NOT NULL,
    tags text NOT NULL,
    digest_minutes integer NOT NULL,
    stale_days integer NOT NULL,
    dest_kind text NOT NULL,
    dest_url text,
    dest_to text NOT NULL,
    secret_sealed text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (company_id, rule_id)
);

CREATE TABLE notification_keys (
    rule_id uuid NOT NULL,
    key text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (rule_id, key)
);

CREATE TABLE notification_outbox (
    outbox_id bigserial PRIMARY KEY,
    delivery_id uuid NOT NULL,
    company_id uuid NOT NULL,
    rule_id uuid NOT NULL,
    event text NOT NULL,
    group_key text NOT NULL,
    data text NOT NULL,
    created_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    lease_owner text,
    last_error text,
    finished_at timestamptz
);
CREATE INDEX notification_outbox_due ON notification_outbox (due_at)
    WHERE state IN ('pending', 'leased');
CREATE INDEX notification_outbox_open ON notification_outbox (rule_id, group_key)
    WHERE state = 'pending' AND attempts = 0;
CREATE INDEX notification_outbox_finished ON notification_outbox (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE notification_deliveries (
    seq bigserial PRIMARY KEY,
    company_id uuid NOT NULL,
    rule_id uuid NOT NULL,
    outbox_id bigint,
    delivery_id uuid NOT NULL,
    event text NOT NULL,
    attempt integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    outcome text NOT NULL,
    status integer,
    response_excerpt text,
    error text,
    next_attempt_at timestamptz,
    duration_ms integer NOT NULL
);
CREATE INDEX notification_deliveries_company ON notification_deliveries (company_id, seq);
CREATE INDEX notification_deliveries_rule ON notification_deliveries (company_id, rule_id, seq);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['notification_rules', 'notification_outbox', 'notification_deliveries'] LOOP
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
