-- Payloads of a few KB are compressed as they are stored. lz4 takes a fraction of the
-- CPU of PostgreSQL's default, pglz, for much the same size; a server built without
-- lz4 keeps the default.
DO $$
BEGIN
    ALTER TABLE events ALTER COLUMN data SET COMPRESSION lz4;
    ALTER TABLE webhook_events ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    NULL;
END
$$;
