-- The open findings of a few vulnerabilities read from an index alone (issue 12): the
-- vulnerabilities list shows each row's affected packages, the distinct (vulnerability,
-- software) of the company's open findings of the page's 50 vulnerabilities — most of the
-- company's open findings. Read through the partial index findings_open, every finding cost a
-- lookup in the table (SQLite gives a WITHOUT ROWID table no deferred seek, and a partial index
-- whose condition column the query names is not covering): 250-450 ms per page at 1,000 hosts
-- x 100 apps per company on the loaded 2-core machine. With resolved_at in findings_vuln the
-- statement reads the index only (the primary key's agent_id and software_key are in every
-- entry): ~10x less in a synthetic company of 97,000 findings (bench/README.md). Lookups of one
-- vulnerability's findings keep the (company_id, vuln_id) prefix they used.
DROP INDEX findings_vuln;
CREATE INDEX findings_vuln ON findings (company_id, vuln_id, resolved_at);
