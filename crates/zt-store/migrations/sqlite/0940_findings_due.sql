-- The summary's SLA counts as range counts of an index (issue 13; the twin of
-- migrations/postgres/0940_findings_due.sql). Overdue and due-soon were one pass over all of a
-- company's open findings per summary; now each severity's open findings first seen before its
-- bound are counted in this index alone, and only the suppressed and the KEV ones are read
-- apart (common/findings.rs, sla_counts_query). `resolved_at` is a column as well as the
-- condition: SQLite takes a partial index whose condition column the query names as covering
-- only when the column is in it (`SEARCH f USING COVERING INDEX findings_due (company_id=? AND
-- severity=? AND first_seen<?)`, checked by the plan test in sqlite/analyses.rs).
CREATE INDEX findings_due ON findings (company_id, severity, first_seen, resolved_at)
    WHERE resolved_at IS NULL;
