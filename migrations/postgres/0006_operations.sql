-- Every status a run has been in, and every execution it started, recorded by triggers
-- so that no write path can forget it. `at` is the run's updated_at of that change.
CREATE TABLE run_history (
    id      BIGSERIAL PRIMARY KEY,
    run_id  TEXT NOT NULL,
    status  TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    error   TEXT,
    at      BIGINT NOT NULL
);
CREATE INDEX run_history_run ON run_history (run_id, id);
CREATE INDEX runs_replay_of ON runs (replay_of) WHERE replay_of IS NOT NULL;

CREATE FUNCTION record_run_history() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.status <> NEW.status OR OLD.attempt <> NEW.attempt THEN
        INSERT INTO run_history (run_id, status, attempt, error, at)
        VALUES (NEW.id, NEW.status, NEW.attempt, NEW.error, NEW.updated_at);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER run_history_change AFTER INSERT OR UPDATE OF status, attempt ON runs
FOR EACH ROW EXECUTE FUNCTION record_run_history();

-- Runs that existed before: their creation and where they are now.
INSERT INTO run_history (run_id, status, attempt, error, at)
SELECT id, 'queued', 0, NULL, created_at FROM runs;
INSERT INTO run_history (run_id, status, attempt, error, at)
SELECT id, status, attempt, error, updated_at FROM runs WHERE status <> 'queued';
