-- Aggregates the dashboard and /metrics read instead of scanning events and runs, kept
-- by triggers in the statement that inserts events or runs, or ends runs.
-- Times are milliseconds since the Unix epoch.
--
-- The triggers are per statement: a batch of rows adds to each aggregate row once, and
-- takes the aggregate rows in key order. The statistics are kept per connection (shard =
-- the server process's pid), so a transaction never waits for another's statistics row:
-- a row shared by all would hold every run's insert and end in line behind each other,
-- and deadlock transactions that take it and another lock in opposite orders. Reads add
-- the shards up. The functions keep the search_path they were created with, so they
-- write the tables of this schema whatever the session's search_path is.

-- Every event name with the number of stored events of that name.
CREATE TABLE event_names (
    name  TEXT PRIMARY KEY,
    count BIGINT NOT NULL
);
CREATE INDEX event_names_count ON event_names (count DESC, name);

INSERT INTO event_names (name, count) SELECT name, COUNT(*) FROM events GROUP BY name;

CREATE FUNCTION event_names_insert() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO event_names (name, count)
        SELECT name, COUNT(*) FROM inserted GROUP BY name ORDER BY name
        ON CONFLICT (name) DO UPDATE SET count = event_names.count + excluded.count;
    RETURN NULL;
END
$$;

CREATE FUNCTION event_names_delete() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE event_names SET count = event_names.count - gone.n
        FROM (SELECT name, COUNT(*) AS n FROM deleted GROUP BY name ORDER BY name) gone
        WHERE event_names.name = gone.name;
    DELETE FROM event_names WHERE count <= 0 AND name IN (SELECT name FROM deleted);
    RETURN NULL;
END
$$;

CREATE TRIGGER event_names_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION event_names_insert();
CREATE TRIGGER event_names_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION event_names_delete();

-- Runs of a function created in a five-minute bucket (bucket = created_at rounded down to
-- 300000 ms), and how many of them have ended, by outcome. max_ms: the longest duration
-- (ended_at - started_at) of those completed or failed.
CREATE TABLE function_stats (
    bucket      BIGINT NOT NULL,
    function_id TEXT NOT NULL,
    runs        BIGINT NOT NULL DEFAULT 0,
    completed   BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    cancelled   BIGINT NOT NULL DEFAULT 0,
    max_ms      BIGINT,
    shard       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, function_id, shard)
);

-- The upper bounds (ms) of the duration histogram's bins; the last bin holds the rest.
CREATE TABLE duration_bins (le_ms BIGINT PRIMARY KEY);
INSERT INTO duration_bins (le_ms) VALUES (1), (2), (5), (10), (20), (50), (100), (200),
    (500), (1000), (2000), (5000), (10000), (20000), (50000), (100000), (200000), (500000),
    (1000000), (2000000), (5000000), (9223372036854775807);

-- Durations of the completed and failed runs of function_stats, counted per bin.
CREATE TABLE function_durations (
    bucket      BIGINT NOT NULL,
    function_id TEXT NOT NULL,
    le_ms       BIGINT NOT NULL,
    count       BIGINT NOT NULL,
    shard       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, function_id, le_ms, shard)
);

INSERT INTO function_stats (bucket, function_id, runs, completed, failed, cancelled, max_ms)
SELECT created_at / 300000 * 300000, function_id, COUNT(*),
       COUNT(*) FILTER (WHERE status = 'completed'),
       COUNT(*) FILTER (WHERE status = 'failed'),
       COUNT(*) FILTER (WHERE status = 'cancelled'),
       MAX(ended_at - started_at) FILTER (WHERE status IN ('completed', 'failed'))
FROM runs GROUP BY 1, 2;

INSERT INTO function_durations (bucket, function_id, le_ms, count)
SELECT created_at / 300000 * 300000, function_id,
       (SELECT MIN(le_ms) FROM duration_bins WHERE le_ms >= ended_at - started_at), COUNT(*)
FROM runs
WHERE status IN ('completed', 'failed') AND started_at IS NOT NULL AND ended_at IS NOT NULL
GROUP BY 1, 2, 3;

CREATE FUNCTION function_stats_insert() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    -- A run stored already ended counts as one that ends.
    WITH counted AS (
        SELECT created_at / 300000 * 300000 AS bucket, function_id, COUNT(*) AS runs,
               COUNT(*) FILTER (WHERE status = 'completed') AS completed,
               COUNT(*) FILTER (WHERE status = 'failed') AS failed,
               COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               MAX(ended_at - started_at) FILTER (WHERE status IN ('completed', 'failed'))
                   AS max_ms
        FROM inserted GROUP BY 1, 2
    )
    INSERT INTO function_stats
        (bucket, function_id, runs, completed, failed, cancelled, max_ms, shard)
        SELECT *, pg_backend_pid() FROM counted ORDER BY 1, 2
        ON CONFLICT (bucket, function_id, shard) DO UPDATE SET
            runs = function_stats.runs + excluded.runs,
            completed = function_stats.completed + excluded.completed,
            failed = function_stats.failed + excluded.failed,
            cancelled = function_stats.cancelled + excluded.cancelled,
            max_ms = GREATEST(function_stats.max_ms, excluded.max_ms);
    INSERT INTO function_durations (bucket, function_id, le_ms, count, shard)
        SELECT created_at / 300000 * 300000, function_id,
               (SELECT MIN(le_ms) FROM duration_bins WHERE le_ms >= ended_at - started_at),
               COUNT(*), pg_backend_pid()
        FROM inserted
        WHERE status IN ('completed', 'failed') AND ended_at - started_at IS NOT NULL
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (bucket, function_id, le_ms, shard) DO UPDATE
        SET count = function_durations.count + excluded.count;
    RETURN NULL;
END
$$;

CREATE FUNCTION function_stats_end() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    -- Most updates of runs (claims, leases, parking) end none.
    IF NOT EXISTS (SELECT 1 FROM updated WHERE status IN ('completed', 'failed', 'cancelled'))
    THEN
        RETURN NULL;
    END IF;
    WITH ended AS (
        SELECT n.created_at / 300000 * 300000 AS bucket, n.function_id, n.status,
               CASE WHEN n.status IN ('completed', 'failed')
                   THEN n.ended_at - n.started_at END AS duration_ms
        FROM updated n JOIN previous o ON o.id = n.id
        WHERE n.status IN ('completed', 'failed', 'cancelled')
          AND o.status NOT IN ('completed', 'failed', 'cancelled')
    ),
    counted AS (
        INSERT INTO function_stats
            (bucket, function_id, completed, failed, cancelled, max_ms, shard)
        SELECT bucket, function_id,
               COUNT(*) FILTER (WHERE status = 'completed'),
               COUNT(*) FILTER (WHERE status = 'failed'),
               COUNT(*) FILTER (WHERE status = 'cancelled'),
               MAX(duration_ms), pg_backend_pid()
        FROM ended GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (bucket, function_id, shard) DO UPDATE SET
            completed = function_stats.completed + excluded.completed,
            failed = function_stats.failed + excluded.failed,
            cancelled = function_stats.cancelled + excluded.cancelled,
            max_ms = GREATEST(function_stats.max_ms, excluded.max_ms)
    )
    INSERT INTO function_durations (bucket, function_id, le_ms, count, shard)
        SELECT bucket, function_id,
               (SELECT MIN(le_ms) FROM duration_bins WHERE le_ms >= duration_ms), COUNT(*),
               pg_backend_pid()
        FROM ended WHERE duration_ms IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (bucket, function_id, le_ms, shard) DO UPDATE
        SET count = function_durations.count + excluded.count;
    RETURN NULL;
END
$$;

CREATE TRIGGER function_stats_insert AFTER INSERT ON runs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION function_stats_insert();
CREATE TRIGGER function_stats_end AFTER UPDATE ON runs
    REFERENCING OLD TABLE AS previous NEW TABLE AS updated
    FOR EACH STATEMENT EXECUTE FUNCTION function_stats_end();

-- Run history is written by a trigger of 0006: it too keeps this schema's tables.
ALTER FUNCTION record_run_history() SET search_path FROM CURRENT;

-- A function's latest failed runs, read by /api/v1/functions, without reading the failed
-- runs of every other function.
CREATE INDEX runs_failed ON runs (function_id, created_at) WHERE status = 'failed';
