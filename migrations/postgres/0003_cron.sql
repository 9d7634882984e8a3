-- The last tick each cron function fired (or the time its schedule started): every
-- process reads it, and the tick's event is deduplicated, so a tick fires once.
CREATE TABLE cron_state (
    function_id TEXT PRIMARY KEY,
    last_tick   BIGINT NOT NULL
);
