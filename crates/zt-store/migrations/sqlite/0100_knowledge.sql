-- The vulnerability knowledge base: normalized advisories, CISA KEV, FIRST EPSS, the revision
-- counter the server polls, a binary snapshot for fast loading, and online-sync bookkeeping.
-- Shared by all companies. Times are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE kb_advisories (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 512),
    source TEXT NOT NULL,
    modified INTEGER,
    withdrawn INTEGER NOT NULL DEFAULT 0,
    -- SHA-256 (hex) of `record`; decides "unchanged" for sources without `modified`.
    content_hash TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    -- The normalized zt_advisory::Advisory as JSON.
    record TEXT NOT NULL,
    imported_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX kb_advisories_source ON kb_advisories (source);

CREATE TABLE kb_kev (
    cve TEXT PRIMARY KEY NOT NULL,
    content_hash TEXT NOT NULL,
    record TEXT NOT NULL,
    imported_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE kb_epss (
    cve TEXT PRIMARY KEY NOT NULL,
    epss REAL NOT NULL,
    percentile REAL NOT NULL,
    score_date TEXT
) WITHOUT ROWID;

CREATE TABLE kb_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    changed_at INTEGER
);
INSERT INTO kb_state (id, revision, changed_at) VALUES (1, 0, NULL);

-- postcard-encoded KnowledgeBase at `revision`; ignored when stale or of another format.
CREATE TABLE kb_snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    format_version INTEGER NOT NULL,
    data BLOB NOT NULL
);

CREATE TABLE kb_feed_state (
    feed TEXT PRIMARY KEY NOT NULL,
    url TEXT,
    etag TEXT,
    last_modified TEXT,
    cursor TEXT,
    last_attempt_at INTEGER,
    last_success_at INTEGER,
    last_status TEXT,
    records INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE kb_imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    finished_at INTEGER NOT NULL,
    origin TEXT NOT NULL,
    -- ImportSummary as JSON.
    summary TEXT NOT NULL
);
