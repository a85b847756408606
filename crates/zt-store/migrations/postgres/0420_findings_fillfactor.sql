-- Half of every findings page is left free (issue 13). An analysis covering 100,000
-- findings rewrites their `analysis_id` and `suppressed`, and so does its expiry; neither
-- column is in an index, so with room on the page each new row version is a HOT update
-- that touches no index. Measured on 100,000 findings of one company with the findings
-- indexes (2 cores, loaded): fillfactor 100 → 5.6-6.0 s per rewrite, 70 → 5.6 s then
-- 1.7 s, 50 → 0.5 s every time. The price is a findings heap about twice as large.
-- A partitioned table takes no storage parameters: each partition gets it. Pages written
-- before this migration keep their fill until rewritten (VACUUM FULL findings_pN, or
-- pg_repack, on an existing installation).
DO $$
DECLARE
    p regclass;
BEGIN
    FOR p IN SELECT inhrelid::regclass FROM pg_inherits
             WHERE inhparent = 'findings'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 50)', p);
    END LOOP;
END
$$;
