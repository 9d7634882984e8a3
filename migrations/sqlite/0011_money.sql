-- Money as Stripe counts it: refunds, disputes, the day a payment succeeded, and one
-- failure per failed charge attempt.

-- charge_id: the payment's charge, as the newest charge event names it.
-- succeeded_at: the earliest time an event reported the payment succeeded (the
--   PaymentIntent event's `created`, a Checkout event's `created`, or the charge's own
--   `created`); revenue counts on its UTC day.
-- charge_amount_refunded / charge_refunds_as_of: the charge's `amount_refunded` as the
--   newest charge event gave it, and that event's `created`.
-- amount_refunded: what is refunded now, from the refunds and the charge's figure (see
--   payments::refunds); refunds_unattributed: the part no stored refund accounts for.
ALTER TABLE payments ADD COLUMN charge_id TEXT;
ALTER TABLE payments ADD COLUMN succeeded_at INTEGER;
ALTER TABLE payments ADD COLUMN charge_amount_refunded INTEGER;
ALTER TABLE payments ADD COLUMN charge_refunds_as_of INTEGER;
ALTER TABLE payments ADD COLUMN amount_refunded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN refunds_unattributed INTEGER NOT NULL DEFAULT 0;
UPDATE payments SET succeeded_at = event_created WHERE status = 'succeeded';
CREATE INDEX payments_succeeded_at ON payments (succeeded_at);
CREATE INDEX payments_charge ON payments (charge_id);
CREATE INDEX payments_refunds_as_of ON payments (charge_refunds_as_of);

-- One row per Refund, its status from the newest event (status_as_of, status_rank).
-- payment_id is the PaymentIntent (the charge when it has none).
CREATE TABLE refunds (
    id             TEXT PRIMARY KEY,
    payment_id     TEXT NOT NULL,
    charge_id      TEXT,
    amount         INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    status         TEXT NOT NULL,
    reason         TEXT,
    failure_reason TEXT,
    created        INTEGER NOT NULL,
    status_as_of   INTEGER NOT NULL,
    status_rank    INTEGER NOT NULL,
    livemode       INTEGER NOT NULL DEFAULT 0,
    account        TEXT,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id);
CREATE INDEX refunds_created ON refunds (created);

-- One row per Dispute, its status from the newest event; won and lost are final.
CREATE TABLE disputes (
    id              TEXT PRIMARY KEY,
    payment_id      TEXT NOT NULL,
    charge_id       TEXT,
    amount          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    reason          TEXT,
    status          TEXT NOT NULL,
    evidence_due_by INTEGER,
    created         INTEGER NOT NULL,
    status_as_of    INTEGER NOT NULL,
    status_rank     INTEGER NOT NULL,
    livemode        INTEGER NOT NULL DEFAULT 0,
    account         TEXT,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX disputes_payment ON disputes (payment_id);
CREATE INDEX disputes_status ON disputes (status);

-- The money a dispute moved: one row per balance transaction the dispute lists, amount
-- negative for a withdrawal and positive for a reinstatement, in the dispute's currency.
CREATE TABLE dispute_funds (
    id         TEXT PRIMARY KEY,
    dispute_id TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    currency   TEXT NOT NULL,
    created    INTEGER NOT NULL
);
CREATE INDEX dispute_funds_dispute ON dispute_funds (dispute_id);
CREATE INDEX dispute_funds_created ON dispute_funds (created);

-- A failed charge attempt reported twice (an invoice and its PaymentIntent, an async
-- Checkout session and its PaymentIntent) is one attempt: `attempt` is the id of the
-- attempt's earliest row, and only that row counts. payment_intent_id, charge_id and
-- invoice_id are what each report names, used to find the other report of the attempt.
ALTER TABLE payment_failures ADD COLUMN attempt TEXT;
ALTER TABLE payment_failures ADD COLUMN payment_intent_id TEXT;
ALTER TABLE payment_failures ADD COLUMN charge_id TEXT;
ALTER TABLE payment_failures ADD COLUMN invoice_id TEXT;
ALTER TABLE payment_failures ADD COLUMN attempt_count INTEGER;
ALTER TABLE payment_failures ADD COLUMN next_payment_attempt INTEGER;
UPDATE payment_failures SET attempt = id;
CREATE INDEX payment_failures_attempt ON payment_failures (attempt);
CREATE INDEX payment_failures_customer ON payment_failures (customer_id, created);

-- Refunds and disputes per day, and what is left.
ALTER TABLE daily_reports ADD COLUMN refunds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE daily_reports ADD COLUMN disputed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE daily_reports ADD COLUMN net INTEGER NOT NULL DEFAULT 0;
UPDATE daily_reports SET net = revenue;
