-- Every status a run has been in, and every execution it started, recorded by triggers
-- so that no write path can forget it. `at` is the run's updated_at of that change.
CREATE TABLE run_history (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    status  TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    error   TEXT,
    at      INTEGER NOT NULL
);
CREATE INDEX run_history_run ON run_history (run_id, id);
CREATE INDEX runs_replay_of ON runs (replay_of) WHERE replay_of IS NOT NULL;

CREATE TRIGGER run_history_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO run_history (run_id, status, attempt, error, at)
    VALUES (new.id, new.status, new.attempt, new.error, new.updated_at);
END;

CREATE TRIGGER run_history_update AFTER UPDATE OF status, attempt ON runs
WHEN old.status <> new.status OR old.attempt <> new.attempt
BEGIN
    INSERT INTO run_history (run_id, status, attempt, error, at)
    VALUES (new.id, new.status, new.attempt, new.error, new.updated_at);
END;

-- Runs that existed before: their creation and where they are now.
INSERT INTO run_history (run_id, status, attempt, error, at)
SELECT id, 'queued', 0, NULL, created_at FROM runs;
INSERT INTO run_history (run_id, status, attempt, error, at)
SELECT id, status, attempt, error, updated_at FROM runs WHERE status <> 'queued';
