//! The events sent: unique, correctly signed Stripe deliveries built before the clock
//! starts, and the ids each should leave in the database.

use anyhow::{Context, anyhow};
use clap::ValueEnum;
use paysteps::testing::engine::system_now_ms;
use paysteps::testing::stripe::fixtures::{self, Overrides};
use paysteps::testing::stripe::signer;
use serde_json::Value;

/// Which Stripe event every request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// `checkout.session.completed` in subscription mode.
    #[value(name = "checkout")]
    Checkout,
    /// `payment_intent.succeeded`.
    #[value(name = "payment_intent")]
    PaymentIntent,
}

impl Mix {
    pub fn event_type(self) -> &'static str {
        match self {
            Mix::Checkout => "checkout.session.completed",
            Mix::PaymentIntent => "payment_intent.succeeded",
        }
    }

    /// The function each event starts.
    pub fn function(self) -> &'static str {
        match self {
            Mix::Checkout => "checkout-session-completed",
            Mix::PaymentIntent => "payment-intent-succeeded",
        }
    }
}

/// The ids that make one event unique, kept to check the database against.
#[derive(Debug, Clone)]
pub struct Expected {
    pub event_id: String,
    /// The subscription (checkout) or PaymentIntent the business row is keyed by.
    pub object_id: String,
    pub customer: String,
    pub user: String,
}

/// One event, its body and signature.
pub struct Prepared {
    pub index: usize,
    pub body: Vec<u8>,
    pub signed_at: i64,
    pub signature: String,
}

/// A signature older than this is made again at send time (Stripe's tolerance is 300 s).
pub const RESIGN_AFTER_SECS: i64 = 240;

/// Events ready to send, in order, and what each should leave in the database.
pub struct Batch {
    pub queue: Vec<Prepared>,
    pub expected: Vec<Expected>,
}

pub fn build(mix: Mix, count: usize, tag: &str, secret: &str) -> anyhow::Result<Batch> {
    let template = fixtures::fixture(mix.event_type())
        .ok_or_else(|| anyhow!("no fixture for {}", mix.event_type()))?;
    let now = system_now_ms() / 1000;
    let mut queue = Vec::with_capacity(count);
    let mut expected = Vec::with_capacity(count);
    for index in 0..count {
        let ids = Expected {
            event_id: format!("evt_bench{tag}{index:08}"),
            object_id: match mix {
                Mix::Checkout => format!("sub_bench{tag}{index:08}"),
                Mix::PaymentIntent => format!("pi_bench{tag}{index:08}"),
            },
            customer: format!("cus_bench{tag}{index:08}"),
            user: format!("user_bench{tag}{index:08}"),
        };
        let mut event = fixtures::build_event(
            template.clone(),
            &Overrides {
                event_id: Some(ids.event_id.clone()),
                created: Some(now),
                user: Some(ids.user.clone()),
                customer: Some(ids.customer.clone()),
                subscription: None,
            },
        );
        let object = &mut event["data"]["object"];
        object["customer"] = Value::from(ids.customer.as_str());
        match mix {
            Mix::Checkout => {
                object["id"] = Value::from(format!("cs_bench{tag}{index:08}"));
                object["subscription"] = Value::from(ids.object_id.as_str());
                object["client_reference_id"] = Value::from(ids.user.as_str());
            }
            Mix::PaymentIntent => {
                object["id"] = Value::from(ids.object_id.as_str());
                object["metadata"]["user_id"] = Value::from(ids.user.as_str());
            }
        }
        let body = serde_json::to_vec(&event).context("serializing an event")?;
        let signature = signer::sign(secret, &body, now);
        queue.push(Prepared {
            index,
            body,
            signed_at: now,
            signature,
        });
        expected.push(ids);
    }
    Ok(Batch { queue, expected })
}
