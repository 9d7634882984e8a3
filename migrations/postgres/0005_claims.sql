-- When a live run can next be claimed: run_at for queued and sleeping runs, the lease's
-- expiry for running ones, NULL once the run has ended. Claims read this one small
-- index in order instead of the whole table's statuses.
ALTER TABLE runs ADD COLUMN due_at BIGINT;
UPDATE runs SET due_at = CASE status
    WHEN 'running' THEN lease_expires_at
    WHEN 'queued' THEN run_at
    WHEN 'sleeping' THEN run_at
END;
DROP INDEX runs_due;
DROP INDEX runs_lease;
CREATE INDEX runs_claimable ON runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, created_at);
