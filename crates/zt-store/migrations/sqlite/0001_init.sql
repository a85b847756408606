-- Schema bookkeeping only; the foundation's tables follow in later migrations.
CREATE TABLE IF NOT EXISTS zt_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
