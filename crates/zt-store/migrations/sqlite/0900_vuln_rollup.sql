-- The read performance of the dashboard's vulnerability views (issue 12): each company's open
-- findings rolled up per vulnerability, so that the vulnerabilities list, a vulnerability's
-- counts and the findings list in EPSS or CVSS order read a few thousand rollup rows instead of
-- every open finding of the company (10 M app records: the list took 1-1.5 s grouping ~70,000
-- findings per company).
--
-- One row per (company, vulnerability, severity) with open findings (suppressed ones
-- included, as the lists show them): how many hosts have one, how many there are, and how
-- many of them are KEV and fixable. Findings of one vulnerability share its severity except
-- while a knowledge change is being re-matched; keyed by severity, the severity filter of the
-- list stays a filter on the findings' own severity. Maintained in the transaction that moves
-- findings (common/rollup.rs): the moved agents' contributions are read before and after, and
-- the difference added.
CREATE TABLE company_vulns (
    company_id BLOB NOT NULL,
    vuln_id TEXT NOT NULL,
    severity INTEGER NOT NULL,
    hosts INTEGER NOT NULL,
    findings INTEGER NOT NULL,
    kev INTEGER NOT NULL,
    fixable INTEGER NOT NULL,
    PRIMARY KEY (company_id, vuln_id, severity)
) WITHOUT ROWID;
INSERT INTO company_vulns (company_id, vuln_id, severity, hosts, findings, kev, fixable)
    SELECT company_id, vuln_id, severity, count(DISTINCT agent_id), count(*), sum(kev),
        sum(fixable)
    FROM findings WHERE resolved_at IS NULL GROUP BY company_id, vuln_id, severity;
