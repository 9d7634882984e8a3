-- Flow control and runs that wait for events.

-- Set while a run of a concurrency-limited function holds or waits for a slot. Runs
-- waiting for a slot are 'pending' with no due_at.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
CREATE INDEX runs_concurrency ON runs (concurrency_key, status, created_at)
    WHERE concurrency_key IS NOT NULL;

-- Runs admitted under each concurrency key and not yet ended.
CREATE TABLE concurrency_slots (
    key    TEXT PRIMARY KEY,
    active BIGINT NOT NULL
);

-- For each throttle key, the earliest time the next run may start.
CREATE TABLE throttles (
    key       TEXT PRIMARY KEY,
    next_free BIGINT NOT NULL
);

-- What a run is listening for: an event that completes a waiting step ('wait') or
-- cancels the run ('cancel'), when its value at match_path equals match_value.
CREATE TABLE listeners (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    kind        TEXT NOT NULL,
    step_key    TEXT,
    event_name  TEXT NOT NULL,
    match_path  TEXT,
    match_value TEXT,
    expires_at  BIGINT
);
CREATE INDEX listeners_event ON listeners (event_name);
CREATE INDEX listeners_run ON listeners (run_id);
