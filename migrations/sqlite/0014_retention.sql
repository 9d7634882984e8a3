-- Retention: what ended longer ago than PAYSTEPS_RETENTION_DAYS is deleted in batches.

-- When the event's payload was dropped. A Stripe event's row outlives its payload, so
-- that a redelivery of it still finds its dedupe key; NULL while the event is whole.
ALTER TABLE events ADD COLUMN pruned_at INTEGER;
-- Whole events by age: what retention looks at, without passing over the kept ids.
CREATE INDEX events_whole ON events (received_at) WHERE pruned_at IS NULL;

CREATE INDEX webhook_deliveries_ended ON webhook_deliveries (ended_at) WHERE ended_at IS NOT NULL;
-- The engine event a business event's delivery runs hang off, which stays while it does.
CREATE INDEX webhook_events_engine_event ON webhook_events (engine_event_id)
    WHERE engine_event_id IS NOT NULL;
