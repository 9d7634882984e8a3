//! One failure per failed charge attempt.
//!
//! Stripe reports one failed attempt more than once: `invoice.payment_failed` and
//! `payment_intent.payment_failed` for a renewal, `checkout.session.async_payment_failed`
//! and `payment_intent.payment_failed` for a bank debit. Each report is logged; two
//! reports of different objects are the same attempt when, within
//! [`WINDOW_SECS`] of each other:
//!
//! 1. both name a charge: it is the same charge;
//! 2. else both name a PaymentIntent: it is the same one;
//! 3. else the PaymentIntent names the invoice (API versions before 2025-03-31.basil);
//! 4. else, from 2025-03-31.basil, where neither an invoice nor its PaymentIntent names
//!    the other: the invoice names no PaymentIntent, the PaymentIntent no invoice, and
//!    they have the same customer, amount and currency.
//!
//! Two reports by objects of the same kind are two attempts.

use serde::{Deserialize, Serialize};

/// How far apart two reports of one attempt may be. Stripe's retries of an invoice are
/// hours apart; its two reports of one attempt, seconds.
pub const WINDOW_SECS: i64 = 600;

/// What a failure report names besides its own object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptLinks {
    /// The PaymentIntent of the attempt, `pi_…`.
    #[serde(default)]
    pub payment_intent_id: Option<String>,
    /// The charge that failed, `ch_…`.
    #[serde(default)]
    pub charge_id: Option<String>,
    /// The invoice it was to pay, `in_…`.
    #[serde(default)]
    pub invoice_id: Option<String>,
    /// For an invoice: attempts made so far.
    #[serde(default)]
    pub attempt_count: Option<i64>,
    /// For an invoice: when Stripe tries again; `None` after the final attempt.
    #[serde(default)]
    pub next_payment_attempt: Option<i64>,
}

/// The kind of object a failure report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// `in_…`: `invoice.payment_failed`.
    Invoice,
    /// `pi_…`: `payment_intent.payment_failed`.
    PaymentIntent,
    /// `cs_…`: `checkout.session.async_payment_failed`.
    CheckoutSession,
    /// Anything else, never part of another report's attempt.
    Other,
}

impl Reporter {
    /// The kind of the object `object_id` names, by its prefix.
    pub fn of(object_id: Option<&str>) -> Reporter {
        match object_id.and_then(|id| id.split_once('_')).map(|(p, _)| p) {
            Some("in") => Reporter::Invoice,
            Some("pi") => Reporter::PaymentIntent,
            Some("cs") => Reporter::CheckoutSession,
            _ => Reporter::Other,
        }
    }
}

/// One logged failure report, as far as matching needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The object that failed: `in_…`, `pi_…` or `cs_…`.
    pub object_id: Option<String>,
    /// `cus_…`.
    pub customer_id: Option<String>,
    /// In the currency's minor unit.
    pub amount: Option<i64>,
    /// Lowercase ISO code.
    pub currency: Option<String>,
    /// The reporting event's `created`.
    pub created: i64,
    /// What else it names.
    pub links: AttemptLinks,
}

impl Report {
    /// The kind of object the report is about.
    pub fn reporter(&self) -> Reporter {
        Reporter::of(self.object_id.as_deref())
    }

    fn payment_intent(&self) -> Option<&str> {
        match self.reporter() {
            Reporter::PaymentIntent => self.object_id.as_deref(),
            _ => self.links.payment_intent_id.as_deref(),
        }
    }

    fn names_no_payment(&self) -> bool {
        self.payment_intent().is_none() && self.links.charge_id.is_none()
    }
}

/// Whether two reports are of one attempt (see the module's rules).
pub fn same_attempt(a: &Report, b: &Report) -> bool {
    let (ra, rb) = (a.reporter(), b.reporter());
    if ra == rb || ra == Reporter::Other || rb == Reporter::Other {
        return false;
    }
    if (a.created - b.created).abs() > WINDOW_SECS {
        return false;
    }
    if let (Some(x), Some(y)) = (&a.links.charge_id, &b.links.charge_id) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.payment_intent(), b.payment_intent()) {
        return x == y;
    }
    let (invoice, intent) = match (ra, rb) {
        (Reporter::Invoice, Reporter::PaymentIntent) => (a, b),
        (Reporter::PaymentIntent, Reporter::Invoice) => (b, a),
        _ => return false,
    };
    if let Some(named) = &intent.links.invoice_id {
        return invoice.object_id.as_ref() == Some(named);
    }
    invoice.names_no_payment()
        && invoice.customer_id.is_some()
        && invoice.customer_id == intent.customer_id
        && invoice.amount == intent.amount
        && invoice.currency == intent.currency
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(object: &str, created: i64, links: AttemptLinks) -> Report {
        Report {
            object_id: Some(object.into()),
            customer_id: Some("cus_1".into()),
            amount: Some(2000),
            currency: Some("usd".into()),
            created,
            links,
        }
    }

    fn charge(id: &str) -> AttemptLinks {
        AttemptLinks {
            charge_id: Some(id.into()),
            ..AttemptLinks::default()
        }
    }

    #[test]
    fn reports_naming_the_same_charge_are_one_attempt() {
        let invoice = report(
            "in_1",
            100,
            AttemptLinks {
                payment_intent_id: Some("pi_1".into()),
                ..charge("ch_1")
            },
        );
        let intent = report("pi_1", 101, charge("ch_1"));
        assert!(same_attempt(&invoice, &intent) && same_attempt(&intent, &invoice));
        let retry = report("pi_1", 101, charge("ch_2"));
        assert!(!same_attempt(&invoice, &retry), "another charge");
        let later = report("pi_1", 100 + WINDOW_SECS + 1, charge("ch_1"));
        assert!(!same_attempt(&invoice, &later), "too far apart");
    }

    #[test]
    fn a_checkout_and_its_payment_intent_are_one_attempt() {
        let session = report(
            "cs_1",
            100,
            AttemptLinks {
                payment_intent_id: Some("pi_1".into()),
                ..AttemptLinks::default()
            },
        );
        assert!(same_attempt(&session, &report("pi_1", 99, charge("ch_1"))));
        assert!(!same_attempt(&session, &report("pi_2", 99, charge("ch_1"))));
    }

    #[test]
    fn from_basil_an_invoice_matches_its_payment_by_customer_and_amount() {
        let invoice = report("in_1", 100, AttemptLinks::default());
        let intent = report("pi_1", 100, charge("ch_1"));
        assert!(same_attempt(&invoice, &intent));
        let other_amount = Report {
            amount: Some(999),
            ..intent.clone()
        };
        assert!(!same_attempt(&invoice, &other_amount));
        let other_invoice = report(
            "pi_1",
            100,
            AttemptLinks {
                invoice_id: Some("in_2".into()),
                ..charge("ch_1")
            },
        );
        assert!(
            !same_attempt(&invoice, &other_invoice),
            "names another invoice"
        );
    }

    #[test]
    fn two_reports_of_one_kind_are_two_attempts() {
        let a = report("pi_1", 100, AttemptLinks::default());
        assert!(!same_attempt(&a, &a.clone()));
        let run = report("run:1", 100, AttemptLinks::default());
        assert!(!same_attempt(&a, &run));
    }
}
