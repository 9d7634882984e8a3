-- Business tables written by the built-in Stripe functions and read by the application.
-- Stripe times (event_created, current_period_end, canceled_at, created) are seconds as
-- Stripe gives them; updated_at is milliseconds. Amounts are in the currency's minor unit.
-- event_created is each row's watermark: the `created` of the newest event applied to it.

CREATE TABLE customers (
    id            TEXT PRIMARY KEY,
    user_id       TEXT,
    email         TEXT,
    event_created BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX customers_user ON customers (user_id);

CREATE TABLE subscriptions (
    id                   TEXT PRIMARY KEY,
    user_id              TEXT,
    customer_id          TEXT,
    status               TEXT NOT NULL,
    price_id             TEXT,
    current_period_end   BIGINT,
    cancel_at_period_end BIGINT NOT NULL DEFAULT 0,
    canceled_at          BIGINT,
    event_created        BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX subscriptions_user ON subscriptions (user_id);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

-- One row per PaymentIntent (or per Checkout session when it has none).
CREATE TABLE payments (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT,
    customer_id         TEXT,
    amount              BIGINT,
    currency            TEXT,
    status              TEXT NOT NULL,
    checkout_session_id TEXT,
    event_created       BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX payments_user ON payments (user_id);
CREATE INDEX payments_customer ON payments (customer_id);
CREATE INDEX payments_updated ON payments (updated_at);

-- id is the Stripe event id, or 'run:<run id>' for a run that failed for good, so a
-- replayed event or handler writes nothing twice.
CREATE TABLE payment_failures (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('payment', 'invoice', 'processing')),
    user_id      TEXT,
    customer_id  TEXT,
    object_id    TEXT,
    amount       BIGINT,
    currency     TEXT,
    code         TEXT,
    decline_code TEXT,
    message      TEXT,
    event_id     TEXT,
    created      BIGINT NOT NULL
);
CREATE INDEX payment_failures_user ON payment_failures (user_id);
CREATE INDEX payment_failures_created ON payment_failures (created);
