-- The engine's journal: what arrived, what runs it started, and each step's checkpoint.
-- Times are milliseconds since the Unix epoch, passed in from Rust.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    -- 'stripe:evt_…' for Stripe deliveries: unique for ever, so a resend weeks later is
    -- still a duplicate. NULL when the sender gave no id.
    dedupe_key  TEXT UNIQUE,
    external_id TEXT,
    name        TEXT NOT NULL,
    source      TEXT NOT NULL,
    data        TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    object_id   TEXT,
    customer    TEXT,
    duplicates  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX events_received ON events (received_at);
CREATE INDEX events_name ON events (name, received_at);
CREATE INDEX events_external ON events (external_id);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    function_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL REFERENCES events (id),
    status           TEXT NOT NULL,
    -- When a queued or sleeping run is next due.
    run_at           BIGINT NOT NULL,
    -- Executions started (a claim after a retry, a sleep or a crash starts another).
    attempt          BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    output           TEXT,
    error            TEXT,
    replay_of        TEXT REFERENCES runs (id),
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    ended_at         BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX runs_due ON runs (status, run_at);
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_function ON runs (function_id, created_at);
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_lease ON runs (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE steps (
    run_id     TEXT NOT NULL REFERENCES runs (id),
    -- name plus occurrence within the run: 'charge:0', 'charge:1', …
    step_key   TEXT NOT NULL,
    name       TEXT NOT NULL,
    position   BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    output     TEXT,
    error      TEXT,
    wake_at    BIGINT,
    started_at BIGINT NOT NULL,
    ended_at   BIGINT,
    PRIMARY KEY (run_id, step_key)
);
