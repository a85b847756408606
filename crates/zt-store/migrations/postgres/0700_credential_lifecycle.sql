-- The whole life of credentials, agents and companies (issue 17; the twin of
-- migrations/sqlite/0700_credential_lifecycle.sql): user tokens get an id to be named by, a
-- name, an expiry and a coarse last-used time; agents can be decommissioned; every change that
-- takes authority away bumps one revision, which every API process watches to drop its cached
-- credentials at once.
ALTER TABLE credentials ADD COLUMN token_id uuid;
ALTER TABLE credentials ADD COLUMN name text;
ALTER TABLE credentials ADD COLUMN expires_at timestamptz;
ALTER TABLE credentials ADD COLUMN last_used_at timestamptz;
UPDATE credentials SET token_id = gen_random_uuid() WHERE token_id IS NULL;
ALTER TABLE credentials ALTER COLUMN token_id SET DEFAULT gen_random_uuid();
ALTER TABLE credentials ALTER COLUMN token_id SET NOT NULL;
CREATE UNIQUE INDEX credentials_token_id ON credentials (token_id);
CREATE INDEX credentials_agent ON credentials (company_id, agent_id) WHERE agent_id IS NOT NULL;

CREATE TABLE credentials_revision (
    singleton integer PRIMARY KEY CHECK (singleton = 1),
    revision bigint NOT NULL
);
INSERT INTO credentials_revision (singleton, revision) VALUES (1, 0);

ALTER TABLE agents ADD COLUMN decommissioned_at timestamptz;
