-- The dashboard's reads (issue 12): every view answers from maintained counts and indexes,
-- never from a pass over a company's findings or apps.

-- Open findings of each agent, recomputed in the transaction that changes its findings (as on
-- PostgreSQL): the summary, the hosts list sorted by risk, the trend snapshots and the
-- operator's overview sum or sort these instead of counting findings.
ALTER TABLE agents ADD COLUMN open_critical INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN open_high INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN open_medium INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN open_low INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN open_unknown INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN open_kev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN open_fixable INTEGER NOT NULL DEFAULT 0;
-- When the agent was last heard of: its last accepted report, or its enrollment.
ALTER TABLE agents ADD COLUMN seen_at INTEGER
    GENERATED ALWAYS AS (coalesce(last_seen_at, enrolled_at)) VIRTUAL;
-- The "risk" order of hosts as one integer: KEV findings, then critical, high, medium, low,
-- each clamped to 12 bits (lexicographic for counts below 4096).
ALTER TABLE agents ADD COLUMN risk INTEGER GENERATED ALWAYS AS (
    (min(open_kev, 4095) << 48) | (min(open_critical, 4095) << 36) | (min(open_high, 4095) << 24)
    | (min(open_medium, 4095) << 12) | min(open_low, 4095)) VIRTUAL;

UPDATE agents SET (open_critical, open_high, open_medium, open_low, open_unknown, open_kev,
    open_fixable) = (SELECT
        coalesce(sum(f.severity = 5), 0), coalesce(sum(f.severity = 4), 0),
        coalesce(sum(f.severity = 3), 0), coalesce(sum(f.severity = 2), 0),
        coalesce(sum(f.severity <= 1), 0), coalesce(sum(f.kev), 0), coalesce(sum(f.fixable), 0)
    FROM findings f
    WHERE f.company_id = agents.company_id AND f.agent_id = agents.agent_id
      AND f.resolved_at IS NULL);

-- The hosts list's orders, and staleness.
CREATE INDEX agents_risk ON agents (company_id, risk, agent_id);
CREATE INDEX agents_seen ON agents (company_id, seen_at, agent_id);
CREATE INDEX agents_os ON agents (company_id, os_name, hostname, agent_id);
-- The counters without the wide agents rows (their compact inventories): a company's summary
-- and trend point read ~60 bytes per agent, the operator's overview every company's. (The
-- times, not `seen_at`: an index is covering only for stored columns.)
CREATE INDEX agents_counts ON agents (company_id, open_critical, open_high, open_medium,
    open_low, open_unknown, open_kev, open_fixable, app_count, last_seen_at, enrolled_at);

-- Each distinct software version installed in a company and on how many of its hosts,
-- maintained as apps come and go (an agent counts once per version, whatever the arch).
CREATE TABLE company_software (
    company_id BLOB NOT NULL,
    software_key BLOB NOT NULL,
    hosts INTEGER NOT NULL,
    PRIMARY KEY (company_id, software_key)
) WITHOUT ROWID;
INSERT INTO company_software (company_id, software_key, hosts)
    SELECT company_id, software_key, count(DISTINCT agent_id) FROM apps
    GROUP BY company_id, software_key;

-- One point per company and UTC day for trends, written by the janitor from the counters
-- above and kept 400 days. `day` is YYYY-MM-DD.
CREATE TABLE company_daily (
    company_id BLOB NOT NULL,
    day TEXT NOT NULL,
    critical INTEGER NOT NULL,
    high INTEGER NOT NULL,
    medium INTEGER NOT NULL,
    low INTEGER NOT NULL,
    unknown INTEGER NOT NULL,
    kev INTEGER NOT NULL,
    fixable INTEGER NOT NULL,
    overdue INTEGER NOT NULL DEFAULT 0,
    suppressed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (company_id, day)
) WITHOUT ROWID;
CREATE INDEX company_daily_day ON company_daily (day);

-- A host's reports, newest first.
CREATE INDEX reports_agent ON reports (company_id, agent_id, accepted_at, report_id);

-- Findings newest first; retention of resolved findings without a pass over the table.
CREATE INDEX findings_first_seen ON findings (company_id, first_seen) WHERE resolved_at IS NULL;
CREATE INDEX findings_resolved ON findings (resolved_at) WHERE resolved_at IS NOT NULL;

-- The findings and vulnerabilities lists by EPSS or CVSS: vulnerabilities in that order,
-- each with its findings.
CREATE INDEX vulns_epss ON vulns (coalesce(epss, -1.0), vuln_id);
CREATE INDEX vulns_cvss ON vulns (coalesce(cvss_score, -1.0), vuln_id);

-- Claims take the reports that waited too long first, oldest first (issue 12: under a burst,
-- newest-first claiming alone starved the oldest).
CREATE INDEX queue_waiting ON queue (enqueued_at) WHERE state IN ('queued', 'leased');
