-- Daily revenue and failed payments per UTC day and currency, written by the
-- `daily-revenue-rollup` cron function and read by GET /api/v1/reports/daily.
-- day is the UTC date (YYYY-MM-DD); amounts are in the currency's minor unit;
-- computed_at (milliseconds) is when the row was last recomputed from the business tables.
CREATE TABLE daily_reports (
    day             TEXT NOT NULL,
    currency        TEXT NOT NULL,
    revenue         INTEGER NOT NULL,
    payments        INTEGER NOT NULL,
    failed_payments INTEGER NOT NULL,
    computed_at     INTEGER NOT NULL,
    PRIMARY KEY (day, currency)
);
CREATE INDEX daily_reports_computed ON daily_reports (computed_at);

-- Payments are counted on the UTC day of their event_created.
CREATE INDEX payments_event_created ON payments (event_created);
