-- Outgoing webhooks: the team's endpoints, paysteps' own business events, one delivery
-- per (event, endpoint) driven by a durable run, and every attempt of it.
-- Times are milliseconds since the Unix epoch.

CREATE TABLE webhook_endpoints (
    id                         TEXT PRIMARY KEY,
    url                        TEXT NOT NULL,
    description                TEXT,
    -- JSON array of event types; ["*"] subscribes to all.
    events                     TEXT NOT NULL,
    -- active | paused | disabled
    status                     TEXT NOT NULL,
    disabled_reason            TEXT,
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at BIGINT,
    last_success_at            BIGINT,
    -- First failure since the last success (or creation); NULL while healthy.
    failing_since              BIGINT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);

-- A business event; its id is the `webhook-id`, derived from what caused it.
CREATE TABLE webhook_events (
    id              TEXT PRIMARY KEY,
    event_type      TEXT NOT NULL,
    source          TEXT NOT NULL,
    -- The exact JSON body every delivery of it sends.
    payload         TEXT NOT NULL,
    -- The engine event the delivery runs hang off; made with the first delivery.
    engine_event_id TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
    id                TEXT PRIMARY KEY,
    event_id          TEXT NOT NULL,
    endpoint_id       TEXT NOT NULL,
    run_id            TEXT NOT NULL UNIQUE,
    resend_of         TEXT,
    -- pending | succeeded | failed | canceled
    status            TEXT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    last_status_code  BIGINT,
    last_error        TEXT,
    next_attempt_at   BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    ended_at          BIGINT
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    at               BIGINT NOT NULL,
    status_code      BIGINT,
    latency_ms       BIGINT NOT NULL,
    response_excerpt TEXT,
    error            TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);
