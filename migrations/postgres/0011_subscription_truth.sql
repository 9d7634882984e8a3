-- A subscription's state is owned by Subscription objects (customer.subscription.*
-- events, or the Stripe API). Invoice and checkout events only make a provisional row
-- while no snapshot exists, and record invoices of their own.
--
-- source: 'event' (a customer.subscription.* snapshot), 'api' (retrieved from Stripe) or
-- 'provisional' (inferred from a checkout or invoice event; replaced by any snapshot).
-- event_created, event_rank (created 1, updated 2, deleted 3, API 4, provisional 0),
-- event_id and previous_status identify the stored snapshot, so that a snapshot of the
-- same second is ordered without the API (see payments::ordering).
ALTER TABLE subscriptions ADD COLUMN source TEXT NOT NULL DEFAULT 'event';
ALTER TABLE subscriptions ADD COLUMN event_rank BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN event_id TEXT;
ALTER TABLE subscriptions ADD COLUMN previous_status TEXT;
ALTER TABLE subscriptions ADD COLUMN current_period_start BIGINT;
ALTER TABLE subscriptions ADD COLUMN cancel_at BIGINT;
ALTER TABLE subscriptions ADD COLUMN ended_at BIGINT;
ALTER TABLE subscriptions ADD COLUMN trial_start BIGINT;
ALTER TABLE subscriptions ADD COLUMN trial_end BIGINT;
-- JSON text, as Stripe sends it: {"behavior": …, "resumes_at": …}.
ALTER TABLE subscriptions ADD COLUMN pause_collection TEXT;
ALTER TABLE subscriptions ADD COLUMN cancellation_reason TEXT;
ALTER TABLE subscriptions ADD COLUMN api_version TEXT;
ALTER TABLE subscriptions ADD COLUMN livemode BIGINT NOT NULL DEFAULT 0;
-- The connected account (Connect) the subscription belongs to; NULL for the platform.
ALTER TABLE subscriptions ADD COLUMN account TEXT;

-- Every item of a subscription, as its stored snapshot lists them.
CREATE TABLE subscription_items (
    subscription_id    TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    position           BIGINT NOT NULL,
    item_id            TEXT,
    price_id           TEXT,
    product_id         TEXT,
    quantity           BIGINT NOT NULL,
    current_period_end BIGINT,
    PRIMARY KEY (subscription_id, position)
);

-- One row per invoice, the newest event's view winning (event_created).
CREATE TABLE invoices (
    id                   TEXT PRIMARY KEY,
    subscription_id      TEXT,
    customer_id          TEXT,
    user_id              TEXT,
    status               TEXT,
    billing_reason       TEXT,
    amount_due           BIGINT NOT NULL,
    amount_paid          BIGINT NOT NULL,
    currency             TEXT NOT NULL,
    attempt_count        BIGINT NOT NULL,
    next_payment_attempt BIGINT,
    period_end           BIGINT,
    payment_intent_id    TEXT,
    charge_id            TEXT,
    hosted_invoice_url   TEXT,
    api_version          TEXT,
    livemode             BIGINT NOT NULL DEFAULT 0,
    account              TEXT,
    event_created        BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX invoices_subscription ON invoices (subscription_id);
CREATE INDEX invoices_customer ON invoices (customer_id);

ALTER TABLE customers ADD COLUMN livemode BIGINT NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN account TEXT;
ALTER TABLE payments ADD COLUMN livemode BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN account TEXT;
ALTER TABLE payment_failures ADD COLUMN livemode BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payment_failures ADD COLUMN account TEXT;
