-- The vulnerability knowledge base (the PostgreSQL twin of migrations/sqlite/0100_knowledge.sql):
-- normalized advisories, CISA KEV, FIRST EPSS, the revision counter the servers poll, a binary
-- snapshot for fast loading, and online-sync bookkeeping. Shared by all companies.

CREATE TABLE kb_advisories (
    id text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 512),
    source text NOT NULL,
    modified timestamptz,
    withdrawn boolean NOT NULL DEFAULT false,
    -- SHA-256 (hex) of `record`; decides "unchanged" for sources without `modified`
    content_hash text NOT NULL,
    model_version bigint NOT NULL,
    -- the normalized zt_advisory::Advisory as JSON
    record text NOT NULL,
    imported_at timestamptz NOT NULL
);
CREATE INDEX kb_advisories_source ON kb_advisories (source);

CREATE TABLE kb_kev (
    cve text PRIMARY KEY,
    content_hash text NOT NULL,
    record text NOT NULL,
    imported_at timestamptz NOT NULL
);

CREATE TABLE kb_epss (
    cve text PRIMARY KEY,
    epss double precision NOT NULL,
    percentile double precision NOT NULL,
    score_date date
);

CREATE TABLE kb_state (
    id integer PRIMARY KEY CHECK (id = 1),
    revision bigint NOT NULL,
    changed_at timestamptz
);
INSERT INTO kb_state (id, revision, changed_at) VALUES (1, 0, NULL);

-- postcard-encoded KnowledgeBase at `revision`; ignored when stale or of another format
CREATE TABLE kb_snapshot (
    id integer PRIMARY KEY CHECK (id = 1),
    revision bigint NOT NULL,
    format_version bigint NOT NULL,
    data bytea NOT NULL
);

CREATE TABLE kb_feed_state (
    feed text PRIMARY KEY,
    url text,
    etag text,
    last_modified text,
    cursor text,
    last_attempt_at timestamptz,
    last_success_at timestamptz,
    last_status text,
    records bigint NOT NULL DEFAULT 0
);

CREATE TABLE kb_imports (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at timestamptz NOT NULL,
    origin text NOT NULL,
    -- ImportSummary as JSON
    summary text NOT NULL
);
