-- Companies, credentials, agents, reports, the queue, deduplicated software with cached match
-- results, apps and findings.
--
-- Conventions: ids are 16-byte BLOBs (UUIDs, software keys), times are INTEGER milliseconds
-- since the Unix epoch (UTC), booleans are 0/1. Tenant tables lead their primary key with
-- company_id; the credentials index, the queue and the software tables are shared.

CREATE TABLE companies (
    company_id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- token hash -> who it authenticates. Shared: a token arrives before its company is known.
CREATE TABLE credentials (
    token_hash BLOB PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('operator', 'user', 'agent', 'enroll')),
    company_id BLOB,
    agent_id BLOB,
    role TEXT CHECK (role IS NULL OR role IN ('admin', 'viewer')),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX credentials_company ON credentials (company_id, kind);

CREATE TABLE agents (
    company_id BLOB NOT NULL,
    agent_id BLOB NOT NULL,
    hostname TEXT NOT NULL,
    os_id TEXT NOT NULL,
    os_version_id TEXT NOT NULL,
    os_name TEXT NOT NULL,
    arch TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_seen_at INTEGER,
    -- digest of the newest (by collected_at) inventory accepted at the door: an equal one is
    -- "unchanged"
    accepted_digest BLOB,
    accepted_collected_at INTEGER,
    -- the inventory stored now: its digest, when it was collected and processed, its size
    inventory_digest BLOB,
    inventory_collected_at INTEGER,
    last_report_at INTEGER,
    app_count INTEGER NOT NULL DEFAULT 0,
    -- the stored inventory in compact form for diffing the next report without reading every
    -- app row (see sqlite/process.rs); the apps table stays the queryable truth
    inventory BLOB,
    PRIMARY KEY (company_id, agent_id)
) WITHOUT ROWID;
CREATE INDEX agents_hostname ON agents (company_id, hostname, agent_id);

CREATE TABLE reports (
    company_id BLOB NOT NULL,
    report_id BLOB NOT NULL,
    agent_id BLOB NOT NULL,
    collected_at INTEGER NOT NULL,
    accepted_at INTEGER NOT NULL,
    processed_at INTEGER,
    status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'done', 'failed')),
    outcome TEXT,
    app_count INTEGER NOT NULL,
    digest BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    -- the report JSON until it is processed
    body BLOB,
    PRIMARY KEY (company_id, report_id)
);
CREATE INDEX reports_processed ON reports (processed_at) WHERE processed_at IS NOT NULL;

CREATE TABLE queue (
    queue_id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id BLOB NOT NULL,
    report_id BLOB NOT NULL,
    agent_id BLOB NOT NULL,
    app_count INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    -- queued: not before (retry backoff); leased: the lease expiry
    visible_at INTEGER NOT NULL,
    lease_owner TEXT,
    enqueued_at INTEGER NOT NULL,
    finished_at INTEGER,
    last_error TEXT
);
CREATE INDEX queue_pending ON queue (queue_id) WHERE state IN ('queued', 'leased');
CREATE INDEX queue_finished ON queue (finished_at) WHERE state = 'done';

-- One row per distinct (ecosystem, name, version, ...) ever reported, by zt_inventory::SoftwareKey.
CREATE TABLE software (
    software_key BLOB PRIMARY KEY NOT NULL,
    ecosystem TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL,
    source_name TEXT,
    source_version TEXT,
    vendor TEXT,
    purl TEXT,
    cpe TEXT,
    -- knowledge revision of the cached matches in software_vulns
    matched_revision INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX software_revision ON software (matched_revision, software_key);

-- Cached match results: which vulnerability (advisory group) hits which software version.
CREATE TABLE software_vulns (
    software_key BLOB NOT NULL,
    vuln_id TEXT NOT NULL,
    fixed_versions TEXT NOT NULL, -- JSON array of strings
    -- what findings of this pair show: severity as in vulns.severity, KEV flag, a fix known
    severity INTEGER NOT NULL,
    kev INTEGER NOT NULL,
    fixable INTEGER NOT NULL,
    method TEXT NOT NULL,
    confidence TEXT NOT NULL,
    PRIMARY KEY (software_key, vuln_id)
) WITHOUT ROWID;

-- What the findings show of a vulnerability, as of the revision that last matched it.
CREATE TABLE vulns (
    vuln_id TEXT PRIMARY KEY NOT NULL,
    aliases TEXT NOT NULL, -- JSON array
    summary TEXT NOT NULL,
    severity INTEGER NOT NULL, -- 0 unknown, 1 none, 2 low, 3 medium, 4 high, 5 critical
    cvss_version TEXT,
    cvss_vector TEXT,
    cvss_score REAL,
    kev INTEGER NOT NULL,
    kev_due_date TEXT,
    epss REAL,
    epss_percentile REAL,
    informational INTEGER NOT NULL,
    revision INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE vuln_aliases (
    alias TEXT NOT NULL,
    vuln_id TEXT NOT NULL,
    PRIMARY KEY (alias, vuln_id)
) WITHOUT ROWID;

-- The apps installed on each agent now.
CREATE TABLE apps (
    company_id BLOB NOT NULL,
    agent_id BLOB NOT NULL,
    software_key BLOB NOT NULL,
    arch TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (company_id, agent_id, software_key, arch)
) WITHOUT ROWID;
-- Deliberately no index by software_key: inserts into it land on random pages, which made
-- every first-time inventory dirty hundreds of pages (measured: 10x slower app inserts).
-- Re-matching, the one reader by software, scans a company's apps once per pass instead.

-- One finding per (company, agent, software version, vulnerability). resolved_at is set when the
-- software version leaves the agent or stops being affected; `resolution` says which way.
CREATE TABLE findings (
    company_id BLOB NOT NULL,
    agent_id BLOB NOT NULL,
    software_key BLOB NOT NULL,
    vuln_id TEXT NOT NULL,
    severity INTEGER NOT NULL,
    kev INTEGER NOT NULL,
    fixable INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    resolved_at INTEGER,
    resolution TEXT,
    PRIMARY KEY (company_id, agent_id, software_key, vuln_id)
) WITHOUT ROWID;
CREATE INDEX findings_open ON findings (company_id, severity DESC, vuln_id, agent_id, software_key)
    WHERE resolved_at IS NULL;
CREATE INDEX findings_software ON findings (company_id, software_key, vuln_id);
CREATE INDEX findings_vuln ON findings (company_id, vuln_id);
