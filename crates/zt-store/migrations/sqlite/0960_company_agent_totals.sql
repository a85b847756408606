-- Each company's sums of its agents' counters (agents, apps, open findings by severity, KEV,
-- fixable): what the company summary, the daily trend point and the operator's overview show
-- (the twin of migrations/postgres/0960_company_agent_totals.sql). The overview summed every
-- company's agents from the covering index `agents_counts`: at 100,000 hosts 56-71 ms p50 and
-- 94-103 ms p95 (issue 12), growing with the fleet.
--
-- One row per company, moved by triggers on `agents`, so that no writer of the counters can
-- forget it. (PostgreSQL writes delta rows instead, to keep its concurrent writers off one
-- row; SQLite has one writer.) Agents are never deleted but with their company, which deletes
-- its row here too.
CREATE TABLE company_agent_totals (
    company_id BLOB NOT NULL PRIMARY KEY,
    agents INTEGER NOT NULL,
    apps INTEGER NOT NULL,
    open_critical INTEGER NOT NULL,
    open_high INTEGER NOT NULL,
    open_medium INTEGER NOT NULL,
    open_low INTEGER NOT NULL,
    open_unknown INTEGER NOT NULL,
    open_kev INTEGER NOT NULL,
    open_fixable INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO company_agent_totals
    SELECT company_id, count(*) - count(decommissioned_at), coalesce(sum(app_count), 0),
        coalesce(sum(open_critical), 0), coalesce(sum(open_high), 0),
        coalesce(sum(open_medium), 0), coalesce(sum(open_low), 0),
        coalesce(sum(open_unknown), 0), coalesce(sum(open_kev), 0),
        coalesce(sum(open_fixable), 0)
    FROM agents GROUP BY company_id;

CREATE TRIGGER agents_totals_insert AFTER INSERT ON agents
BEGIN
    INSERT INTO company_agent_totals VALUES (NEW.company_id, NEW.decommissioned_at IS NULL,
        NEW.app_count, NEW.open_critical, NEW.open_high, NEW.open_medium, NEW.open_low,
        NEW.open_unknown, NEW.open_kev, NEW.open_fixable)
    ON CONFLICT (company_id) DO UPDATE SET agents = agents + excluded.agents,
        apps = apps + excluded.apps, open_critical = open_critical + excluded.open_critical,
        open_high = open_high + excluded.open_high,
        open_medium = open_medium + excluded.open_medium,
        open_low = open_low + excluded.open_low,
        open_unknown = open_unknown + excluded.open_unknown,
        open_kev = open_kev + excluded.open_kev,
        open_fixable = open_fixable + excluded.open_fixable;
END;

-- Only when a summed column moved (most updates say the agent was seen).
CREATE TRIGGER agents_totals_update AFTER UPDATE OF decommissioned_at, app_count,
    open_critical, open_high, open_medium, open_low, open_unknown, open_kev, open_fixable
    ON agents
    WHEN (OLD.decommissioned_at IS NULL) <> (NEW.decommissioned_at IS NULL)
        OR OLD.app_count <> NEW.app_count OR OLD.open_critical <> NEW.open_critical
        OR OLD.open_high <> NEW.open_high OR OLD.open_medium <> NEW.open_medium
        OR OLD.open_low <> NEW.open_low OR OLD.open_unknown <> NEW.open_unknown
        OR OLD.open_kev <> NEW.open_kev OR OLD.open_fixable <> NEW.open_fixable
BEGIN
    UPDATE company_agent_totals SET
        agents = agents + ((NEW.decommissioned_at IS NULL) - (OLD.decommissioned_at IS NULL)),
        apps = apps + (NEW.app_count - OLD.app_count),
        open_critical = open_critical + (NEW.open_critical - OLD.open_critical),
        open_high = open_high + (NEW.open_high - OLD.open_high),
        open_medium = open_medium + (NEW.open_medium - OLD.open_medium),
        open_low = open_low + (NEW.open_low - OLD.open_low),
        open_unknown = open_unknown + (NEW.open_unknown - OLD.open_unknown),
        open_kev = open_kev + (NEW.open_kev - OLD.open_kev),
        open_fixable = open_fixable + (NEW.open_fixable - OLD.open_fixable)
    WHERE company_id = NEW.company_id;
END;

-- The covering index of the counters served only the sums: every counter update paid for it.
DROP INDEX agents_counts;
