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
ALTER TABLE subscriptions ADD COLUMN event_rank INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN event_id TEXT;
ALTER TABLE subscriptions ADD COLUMN previous_status TEXT;
ALTER TABLE subscriptions ADD COLUMN current_period_start INTEGER;
ALTER TABLE subscriptions ADD COLUMN cancel_at INTEGER;
ALTER TABLE subscriptions ADD COLUMN ended_at INTEGER;
ALTER TABLE subscriptions ADD COLUMN trial_start INTEGER;
ALTER TABLE subscriptions ADD COLUMN trial_end INTEGER;
-- JSON text, as Stripe sends it: {"behavior": …, "resumes_at": …}.
ALTER TABLE subscriptions ADD COLUMN pause_collection TEXT;
ALTER TABLE subscriptions ADD COLUMN cancellation_reason TEXT;
ALTER TABLE subscriptions ADD COLUMN api_version TEXT;
ALTER TABLE subscriptions ADD COLUMN livemode INTEGER NOT NULL DEFAULT 0;
-- The connected account (Connect) the subscription belongs to; NULL for the platform.
ALTER TABLE subscriptions ADD COLUMN account TEXT;

-- Every item of a subscription, as its stored snapshot lists them.
CREATE TABLE subscription_items (
    subscription_id    TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    position           INTEGER NOT NULL,
    item_id            TEXT,
    price_id           TEXT,
    product_id         TEXT,
    quantity           INTEGER NOT NULL,
    current_period_end INTEGER,
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
    amount_due           INTEGER NOT NULL,
    amount_paid          INTEGER NOT NULL,
    currency             TEXT NOT NULL,
    attempt_count        INTEGER NOT NULL,
    next_payment_attempt INTEGER,
    period_end           INTEGER,
    payment_intent_id    TEXT,
    charge_id            TEXT,
    hosted_invoice_url   TEXT,
    api_version          TEXT,
    livemode             INTEGER NOT NULL DEFAULT 0,
    account              TEXT,
    event_created        INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX invoices_subscription ON invoices (subscription_id);
CREATE INDEX invoices_customer ON invoices (customer_id);

ALTER TABLE customers ADD COLUMN livemode INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN account TEXT;
ALTER TABLE payments ADD COLUMN livemode INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN account TEXT;
ALTER TABLE payment_failures ADD COLUMN livemode INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payment_failures ADD COLUMN account TEXT;
