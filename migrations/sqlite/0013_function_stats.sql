-- Aggregates the dashboard and /metrics read instead of scanning events and runs, kept
-- by triggers in the transaction that inserts an event or a run, or ends a run.
-- Times are milliseconds since the Unix epoch.

-- Every event name with the number of stored events of that name.
CREATE TABLE event_names (
    name  TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE INDEX event_names_count ON event_names (count DESC, name);

INSERT INTO event_names (name, count) SELECT name, COUNT(*) FROM events GROUP BY name;

CREATE TRIGGER event_names_insert AFTER INSERT ON events
BEGIN
    INSERT INTO event_names (name, count) VALUES (NEW.name, 1)
        ON CONFLICT (name) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER event_names_delete AFTER DELETE ON events
BEGIN
    UPDATE event_names SET count = count - 1 WHERE name = OLD.name;
    DELETE FROM event_names WHERE name = OLD.name AND count <= 0;
END;

-- Runs of a function created in a five-minute bucket (bucket = created_at rounded down to
-- 300000 ms), and how many of them have ended, by outcome. max_ms: the longest duration
-- (ended_at - started_at) of those completed or failed.
CREATE TABLE function_stats (
    bucket      INTEGER NOT NULL,
    function_id TEXT NOT NULL,
    runs        INTEGER NOT NULL DEFAULT 0,
    completed   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    cancelled   INTEGER NOT NULL DEFAULT 0,
    max_ms      INTEGER,
    PRIMARY KEY (bucket, function_id)
);

-- The upper bounds (ms) of the duration histogram's bins; the last bin holds the rest.
CREATE TABLE duration_bins (le_ms INTEGER PRIMARY KEY);
INSERT INTO duration_bins (le_ms) VALUES (1), (2), (5), (10), (20), (50), (100), (200),
    (500), (1000), (2000), (5000), (10000), (20000), (50000), (100000), (200000), (500000),
    (1000000), (2000000), (5000000), (9223372036854775807);

-- Durations of the completed and failed runs of function_stats, counted per bin.
CREATE TABLE function_durations (
    bucket      INTEGER NOT NULL,
    function_id TEXT NOT NULL,
    le_ms       INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (bucket, function_id, le_ms)
);

INSERT INTO function_stats (bucket, function_id, runs, completed, failed, cancelled, max_ms)
SELECT created_at / 300000 * 300000, function_id, COUNT(*),
       SUM(status = 'completed'), SUM(status = 'failed'), SUM(status = 'cancelled'),
       MAX(CASE WHEN status IN ('completed', 'failed') THEN ended_at - started_at END)
FROM runs GROUP BY 1, 2;

INSERT INTO function_durations (bucket, function_id, le_ms, count)
SELECT created_at / 300000 * 300000, function_id,
       (SELECT MIN(le_ms) FROM duration_bins WHERE le_ms >= ended_at - started_at), COUNT(*)
FROM runs
WHERE status IN ('completed', 'failed') AND started_at IS NOT NULL AND ended_at IS NOT NULL
GROUP BY 1, 2, 3;

CREATE TRIGGER function_stats_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO function_stats (bucket, function_id, runs)
        VALUES (NEW.created_at / 300000 * 300000, NEW.function_id, 1)
        ON CONFLICT (bucket, function_id) DO UPDATE SET runs = runs + 1;
END;

CREATE TRIGGER function_stats_end AFTER UPDATE OF status ON runs
WHEN OLD.status NOT IN ('completed', 'failed', 'cancelled')
    AND NEW.status IN ('completed', 'failed', 'cancelled')
BEGIN
    INSERT INTO function_stats (bucket, function_id, completed, failed, cancelled, max_ms)
        VALUES (NEW.created_at / 300000 * 300000, NEW.function_id,
            NEW.status = 'completed', NEW.status = 'failed', NEW.status = 'cancelled',
            CASE WHEN NEW.status IN ('completed', 'failed')
                THEN NEW.ended_at - NEW.started_at END)
        ON CONFLICT (bucket, function_id) DO UPDATE SET
            completed = completed + excluded.completed,
            failed = failed + excluded.failed,
            cancelled = cancelled + excluded.cancelled,
            max_ms = CASE WHEN max_ms IS NULL OR excluded.max_ms > max_ms
                THEN excluded.max_ms ELSE max_ms END;
    INSERT INTO function_durations (bucket, function_id, le_ms, count)
        SELECT NEW.created_at / 300000 * 300000, NEW.function_id, MIN(le_ms), 1
        FROM duration_bins WHERE le_ms >= NEW.ended_at - NEW.started_at
            AND NEW.status IN ('completed', 'failed')
        HAVING COUNT(*) > 0
        ON CONFLICT (bucket, function_id, le_ms) DO UPDATE SET count = count + 1;
END;

-- A run stored already ended counts as one that ends.
CREATE TRIGGER function_stats_insert_ended AFTER INSERT ON runs
WHEN NEW.status IN ('completed', 'failed', 'cancelled')
BEGIN
    INSERT INTO function_stats (bucket, function_id, completed, failed, cancelled, max_ms)
        VALUES (NEW.created_at / 300000 * 300000, NEW.function_id,
            NEW.status = 'completed', NEW.status = 'failed', NEW.status = 'cancelled',
            CASE WHEN NEW.status IN ('completed', 'failed')
                THEN NEW.ended_at - NEW.started_at END)
        ON CONFLICT (bucket, function_id) DO UPDATE SET
            completed = completed + excluded.completed,
            failed = failed + excluded.failed,
            cancelled = cancelled + excluded.cancelled,
            max_ms = CASE WHEN max_ms IS NULL OR excluded.max_ms > max_ms
                THEN excluded.max_ms ELSE max_ms END;
    INSERT INTO function_durations (bucket, function_id, le_ms, count)
        SELECT NEW.created_at / 300000 * 300000, NEW.function_id, MIN(le_ms), 1
        FROM duration_bins WHERE le_ms >= NEW.ended_at - NEW.started_at
            AND NEW.status IN ('completed', 'failed')
        HAVING COUNT(*) > 0
        ON CONFLICT (bucket, function_id, le_ms) DO UPDATE SET count = count + 1;
END;

-- A function's latest failed runs, read by /api/v1/functions, without reading the failed
-- runs of every other function.
CREATE INDEX runs_failed ON runs (function_id, created_at) WHERE status = 'failed';
