//! Logging failures, each report once, and linking the reports of one charge attempt
//! (see [`crate::payments::attempts`]).

use crate::args;
use crate::payments::attempts::{self, AttemptLinks, Report};
use crate::store::{Result, StoreTx};

use super::NewFailure;

const INSERT: &str = "INSERT INTO payment_failures (id, kind, user_id, customer_id, \
     object_id, amount, currency, code, decline_code, message, event_id, created, attempt, \
     payment_intent_id, charge_id, invoice_id, attempt_count, next_payment_attempt, livemode, \
     account) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $1, $13, $14, $15, \
     $16, $17, $18, $19) ON CONFLICT (id) DO NOTHING";

/// Failures that may report the same attempt as one made at `$1` about customer `$2`,
/// PaymentIntent `$3` or charge `$4`.
const CANDIDATES: &str = "SELECT id, attempt, object_id, customer_id, amount, currency, created, \
     payment_intent_id, charge_id, invoice_id FROM payment_failures \
     WHERE kind IN ('payment', 'invoice') AND created >= $1 - $5 AND created <= $1 + $5 \
     AND (customer_id = $2 OR payment_intent_id = $3 OR object_id = $3 OR charge_id = $4) \
     ORDER BY created, id";

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn report(row: &Row) -> Report {
    let (_, _, object_id, customer_id, amount, currency, created, pi, charge, invoice) =
        row.clone();
    Report {
        object_id,
        customer_id,
        amount,
        currency,
        created,
        links: AttemptLinks {
            payment_intent_id: pi,
            charge_id: charge,
            invoice_id: invoice,
            ..AttemptLinks::default()
        },
    }
}

/// Logs a failure once (returns false when a failure with this id is already logged)
/// and, for a payment or invoice failure, joins it to the other report of its attempt.
pub async fn record_failure(tx: &mut StoreTx, f: &NewFailure) -> Result<bool> {
    let links = &f.links;
    let inserted = tx
        .execute(
            INSERT,
            args![
                &f.id,
                f.kind.as_str(),
                f.user_id.as_deref(),
                f.customer_id.as_deref(),
                f.object_id.as_deref(),
                f.amount,
                f.currency.as_deref(),
                f.code.as_deref(),
                f.decline_code.as_deref(),
                f.message.as_deref(),
                f.event_id.as_deref(),
                f.created,
                links.payment_intent_id.as_deref(),
                links.charge_id.as_deref(),
                links.invoice_id.as_deref(),
                links.attempt_count,
                links.next_payment_attempt,
                i64::from(f.livemode),
                f.account.as_deref()
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    if f.kind != super::FailureKind::Processing {
        link_attempt(tx, f).await?;
    }
    Ok(true)
}

/// Joins `f`'s row to the first report of the same attempt whose attempt has no report
/// of `f`'s kind of object yet; the attempt takes the id of its earliest row.
async fn link_attempt(tx: &mut StoreTx, f: &NewFailure) -> Result<()> {
    let new = Report {
        object_id: f.object_id.clone(),
        customer_id: f.customer_id.clone(),
        amount: f.amount,
        currency: f.currency.clone(),
        created: f.created,
        links: f.links.clone(),
    };
    let payment_intent = match new.reporter() {
        attempts::Reporter::PaymentIntent => f.object_id.as_deref(),
        _ => f.links.payment_intent_id.as_deref(),
    };
    let candidates: Vec<Row> = tx
        .fetch_all(
            CANDIDATES,
            args![
                f.created,
                f.customer_id.as_deref(),
                payment_intent,
                f.links.charge_id.as_deref(),
                attempts::WINDOW_SECS
            ],
        )
        .await?;
    for row in candidates.iter().filter(|row| row.0 != f.id) {
        if !attempts::same_attempt(&new, &report(row)) {
            continue;
        }
        let attempt = &row.1;
        let group: Vec<(String, Option<String>, i64)> = tx
            .fetch_all(
                "SELECT id, object_id, created FROM payment_failures WHERE attempt = $1",
                args![attempt],
            )
            .await?;
        let taken = group
            .iter()
            .any(|(_, object, _)| attempts::Reporter::of(object.as_deref()) == new.reporter());
        if taken {
            continue;
        }
        let earliest = group
            .iter()
            .map(|(id, _, created)| (*created, id.as_str()))
            .chain([(f.created, f.id.as_str())])
            .min()
            .map(|(_, id)| id.to_owned())
            .unwrap_or_else(|| f.id.clone());
        tx.execute(
            "UPDATE payment_failures SET attempt = $1 WHERE attempt = $2 OR id = $3",
            args![&earliest, attempt, &f.id],
        )
        .await?;
        return Ok(());
    }
    Ok(())
}
