-- The summary's SLA counts as range counts of an index (issue 13; the twin of
-- migrations/sqlite/0940_findings_due.sql). Overdue and due-soon were one pass over all of a
-- company's open findings per summary (60 ms at 100,000 of them, growing with the company);
-- now each severity's open findings first seen before its bound are counted by an index-only
-- scan of this index, and only the suppressed and the KEV ones are read apart
-- (common/findings.rs, sla_counts_query). `suppressed` is deliberately not in it: an analysis
-- rewriting 100,000 findings relies on HOT updates, which any index naming the column would
-- end (migration 0420). On a partitioned table the index is made on every partition; on Citus
-- on every shard.
CREATE INDEX findings_due ON findings (company_id, severity, first_seen)
    WHERE resolved_at IS NULL;
