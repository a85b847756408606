-- Targeted re-match after a knowledge change (issue 15): which advisories changed at which
-- revision, the software versions whose cached matches changed and whose hosts' findings are
-- still to be brought in line (durable: a crash between the two loses nothing), and the
-- cached matches of one vulnerability found without scanning (KEV changes, changed groups).
ALTER TABLE kb_advisories ADD COLUMN changed_revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX kb_advisories_changed ON kb_advisories (changed_revision);
CREATE TABLE rematch_pending (
    software_key BLOB PRIMARY KEY NOT NULL
) WITHOUT ROWID;
CREATE INDEX software_vulns_vuln ON software_vulns (vuln_id);
