-- Dashboard sign-ins: one row per signed-in browser, found by the SHA-256 of the cookie's
-- value (the value itself is never stored), until it expires or is signed out.
-- Times are milliseconds since the Unix epoch.

CREATE TABLE dashboard_sessions (
    -- hex SHA-256 of the session cookie's value
    id_hash    TEXT PRIMARY KEY,
    -- binds the session to the dashboard token it was opened with: a new token signs
    -- every browser out
    token_tag  TEXT NOT NULL,
    -- sent back by the page on every write (x-csrf-token)
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX dashboard_sessions_expires_at ON dashboard_sessions (expires_at);
