-- The whole life of credentials, agents and companies (issue 17; DESIGN.md "Tokens, agents,
-- companies"): user tokens get an id to be named by, a name, an expiry and a coarse
-- last-used time; agents can be decommissioned; every change that takes authority away bumps
-- one revision, which every API process watches to drop its cached credentials at once.
ALTER TABLE credentials ADD COLUMN token_id BLOB;
ALTER TABLE credentials ADD COLUMN name TEXT;
ALTER TABLE credentials ADD COLUMN expires_at INTEGER;
ALTER TABLE credentials ADD COLUMN last_used_at INTEGER;
UPDATE credentials SET token_id = randomblob(16) WHERE token_id IS NULL;
CREATE UNIQUE INDEX credentials_token_id ON credentials (token_id);
-- A company's tokens, listed; an agent's tokens, revoked.
CREATE INDEX credentials_agent ON credentials (company_id, agent_id) WHERE agent_id IS NOT NULL;

CREATE TABLE credentials_revision (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    revision INTEGER NOT NULL
);
INSERT INTO credentials_revision (singleton, revision) VALUES (1, 0);

ALTER TABLE agents ADD COLUMN decommissioned_at INTEGER;
-- The summary and the overview count live agents from the covering index.
DROP INDEX agents_counts;
CREATE INDEX agents_counts ON agents (company_id, open_critical, open_high, open_medium,
    open_low, open_unknown, open_kev, open_fixable, app_count, last_seen_at, enrolled_at,
    decommissioned_at);

-- Every credential gets an id, whichever statement inserts it (PostgreSQL: a column default).
CREATE TRIGGER credentials_token_id AFTER INSERT ON credentials WHEN NEW.token_id IS NULL
BEGIN
    UPDATE credentials SET token_id = randomblob(16) WHERE token_hash = NEW.token_hash;
END;
