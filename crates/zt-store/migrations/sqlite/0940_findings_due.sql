-- The summary's SLA counts as range counts of an index (issue 13; the twin of
-- migrations/postgres/0940_findings_due.sql). Overdue and due-soon were one pass over all of a
-- company's open findings per summary; now each severity's unsuppressed open findings first
-- seen before its bound, and the suppressed ones, are counted in this index alone
-- (common/findings.rs, sla_counts_query). Unlike PostgreSQL's twin it holds `suppressed`:
-- SQLite has no HOT updates to keep, so an analysis's rewrite costs it only the entries that
-- move. `resolved_at` is a column as well as the condition: SQLite takes a partial index whose
-- condition column the query names as covering only when the column is in it (`SEARCH f USING
-- COVERING INDEX findings_due (company_id=? AND suppressed=? AND severity=? AND
-- first_seen<?)`, checked by the plan test in sqlite/analyses.rs).
CREATE INDEX findings_due ON findings (company_id, suppressed, severity, first_seen, resolved_at)
    WHERE resolved_at IS NULL;
