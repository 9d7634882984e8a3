-- Apps written with the Inngest SDKs whose functions paysteps runs. The registration
-- last accepted is kept whole, so a restart has the app's functions before the app is
-- reachable again; a sync that is refused leaves it in place and records why.
CREATE TABLE apps (
    url TEXT PRIMARY KEY,
    app_id TEXT,
    sdk TEXT,
    framework TEXT,
    registration TEXT,
    checksum TEXT,
    function_count BIGINT NOT NULL DEFAULT 0,
    synced_at BIGINT,
    error TEXT,
    checked_at BIGINT,
    created_at BIGINT NOT NULL
);

-- A wait or cancellation an SDK function declares with a condition (CEL over `event`,
-- the run's own event, and `async`, the arriving one) rather than a field match.
ALTER TABLE listeners ADD COLUMN condition TEXT;
