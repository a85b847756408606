-- Dashboard sessions (DESIGN.md "Dashboard sign-in"; the twin of
-- migrations/sqlite/0350_sessions.sql): only the SHA-256 of the session id is stored; a
-- session is bound to the token it was opened with, which every request resolves again, so a
-- revoked or expired token ends its sessions. In the database, so that every API process
-- knows every session. Shared like `credentials` (no row-level security): a cookie arrives
-- before its company is known.
CREATE TABLE sessions (
    session_hash bytea PRIMARY KEY,
    token_hash bytea NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE INDEX sessions_token ON sessions (token_hash);
