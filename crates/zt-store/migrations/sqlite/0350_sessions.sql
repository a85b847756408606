-- Dashboard sessions (DESIGN.md "Dashboard sign-in"): a browser signs in with a token and gets
-- a session cookie. Only the SHA-256 of the session id is stored. A session is bound to the
-- token it was opened with (its hash): every request resolves that token again, so a revoked
-- or expired token ends its sessions, and the cookie authorizes exactly what the token may.
-- Shared like `credentials`: a cookie arrives before its company is known.
CREATE TABLE sessions (
    session_hash BLOB PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
-- the janitor's purge of expired sessions, and ending every session of a token
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE INDEX sessions_token ON sessions (token_hash);
