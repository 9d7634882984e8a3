//! Stripe's objects as the built-in functions read them, from the payload of any API
//! version a webhook endpoint may be pinned to (2020-08-27 to the newest).
//!
//! Only the fields paysteps uses are read; every other field, and every field a later
//! version adds, is ignored. Where a fact moved between versions, each reader looks in
//! every place it has lived (a subscription's period on the subscription before
//! 2025-03-31.basil and on its items after; an invoice's subscription at
//! `invoice.subscription` or `invoice.parent.subscription_details.subscription`; a
//! PaymentIntent's charge in `charges` or `latest_charge`). An absent optional field is
//! `None`. A payload that cannot be read fails with a [`ReadError`] naming the field and
//! the event's API version.

mod charge;
mod checkout;
mod invoice;
mod payment_intent;
mod subscription;

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use charge::{Charge, Dispute, DisputeFunds, Refund};
pub use checkout::CheckoutSession;
pub use invoice::{Invoice, UpcomingInvoice};
pub use payment_intent::PaymentIntent;
pub use subscription::{Subscription, SubscriptionItem, Terms};

/// Why a Stripe event's payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The envelope lacks `id`, `type`, `created` or `data.object`, or has them of the
    /// wrong type.
    #[error("not a Stripe event: {0}")]
    Envelope(String),
    /// A field is missing that the object must have.
    #[error("{event_type} event (API version {api_version}): {field} is missing")]
    Missing {
        /// e.g. `customer.subscription.deleted`.
        event_type: String,
        /// The event's `api_version`, or `unknown`.
        api_version: String,
        /// The field's path, e.g. `data.object.status`.
        field: String,
    },
    /// A field has a value of another type than Stripe documents for it.
    #[error("{event_type} event (API version {api_version}): {field}: {reason}")]
    Invalid {
        /// e.g. `invoice.paid`.
        event_type: String,
        /// The event's `api_version`, or `unknown`.
        api_version: String,
        /// The field's path, e.g. `data.object.items.data[0].quantity`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An object retrieved from the Stripe API lacks a field or has one of another type.
    #[error("{request}: {field} {reason}")]
    Retrieved {
        /// What was asked, e.g. `GET /v1/subscriptions/sub_1`.
        request: String,
        /// The field's path in the answer.
        field: String,
        /// `is missing`, or what is wrong with it.
        reason: String,
    },
}

/// Reads an object retrieved from the Stripe API by `request` as a `T`.
pub fn read_retrieved<T: StripeObject>(object: &Value, request: &str) -> Result<T, ReadError> {
    read_as(object).map_err(|fault| ReadError::Retrieved {
        request: request.to_owned(),
        field: fault.field,
        reason: fault.reason.unwrap_or_else(|| "is missing".to_owned()),
    })
}

/// The field of an object that could not be read.
struct Fault {
    /// Its path in the object.
    field: String,
    /// What is wrong with its value; `None` when it is missing.
    reason: Option<String>,
}

/// Reads `object` as a `T`, or says which field is at fault.
fn read_as<T: StripeObject>(object: &Value) -> Result<T, Fault> {
    let raw: T::Raw = serde_path_to_error::deserialize(object).map_err(|e| Fault {
        field: e.path().to_string(),
        reason: Some(e.into_inner().to_string()),
    })?;
    T::from_raw(raw).map_err(|field| Fault {
        field: field.to_owned(),
        reason: None,
    })
}

/// A Stripe event's envelope, with its object still to be read.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeEvent {
    /// `evt_…`.
    pub id: String,
    /// e.g. `invoice.paid`.
    pub event_type: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// The API version the payload is shaped for, when the event names one.
    pub api_version: Option<String>,
    /// False for test-mode events.
    pub livemode: bool,
    /// The connected account the event is about (Connect), `acct_…`.
    pub account: Option<String>,
    /// `data.object`.
    pub object: Value,
    /// `data.previous_attributes`: the changed fields' old values, on `*.updated` events.
    pub previous_attributes: Option<Value>,
}

#[derive(Deserialize)]
struct EnvelopeFields {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    livemode: bool,
    #[serde(default)]
    account: Option<String>,
    data: DataFields,
}

#[derive(Deserialize)]
struct DataFields {
    object: Value,
    #[serde(default)]
    previous_attributes: Option<Value>,
}

impl StripeEvent {
    /// Reads the envelope of `data`, a whole Stripe event.
    pub fn read(data: Value) -> Result<StripeEvent, ReadError> {
        let fields: EnvelopeFields = serde_path_to_error::deserialize(data).map_err(|e| {
            let path = e.path().to_string();
            ReadError::Envelope(format!("{path}: {}", e.into_inner()))
        })?;
        if !fields.data.object.is_object() {
            return Err(ReadError::Envelope("data.object is not an object".into()));
        }
        Ok(StripeEvent {
            id: fields.id,
            event_type: fields.event_type,
            created: fields.created,
            api_version: fields.api_version.filter(|v| !v.is_empty()),
            livemode: fields.livemode,
            account: fields.account.filter(|a| !a.is_empty()),
            object: fields.data.object,
            previous_attributes: fields.data.previous_attributes.filter(Value::is_object),
        })
    }

    /// Reads `data.object` as a `T`.
    pub fn object<T: StripeObject>(&self) -> Result<T, ReadError> {
        read_as(&self.object).map_err(|fault| {
            let (event_type, field) = (
                self.event_type.clone(),
                format!("data.object.{}", fault.field),
            );
            let api_version = self
                .api_version
                .clone()
                .unwrap_or_else(|| "unknown".to_owned());
            match fault.reason {
                None => ReadError::Missing {
                    event_type,
                    api_version,
                    field,
                },
                Some(reason) => ReadError::Invalid {
                    event_type,
                    api_version,
                    field,
                    reason,
                },
            }
        })
    }

    /// The old value of a field named in `data.previous_attributes`, as text.
    pub fn previous_text(&self, field: &str) -> Option<String> {
        self.previous_attributes
            .as_ref()?
            .get(field)?
            .as_str()
            .map(str::to_owned)
    }
}

/// A Stripe object read leniently: `Raw` is what the payload may hold in any version,
/// and `from_raw` checks the fields the object must have, naming the first missing one.
pub trait StripeObject: Sized {
    /// Every field of interest, each optional.
    type Raw: DeserializeOwned;
    /// The object, or the path (below `data.object`) of a field it must have but lacks.
    fn from_raw(raw: Self::Raw) -> Result<Self, &'static str>;
}

/// A field that is an id or, when expanded, the object with that id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum Expandable {
    /// The id alone.
    Id(String),
    /// The expanded object.
    Object {
        /// The object's id.
        id: String,
    },
}

impl Expandable {
    pub(crate) fn into_id(self) -> String {
        match self {
            Expandable::Id(id) | Expandable::Object { id } => id,
        }
    }
}

/// An optional expandable id, `None` when absent, null or empty.
pub(crate) fn id_of(field: Option<Expandable>) -> Option<String> {
    field.map(Expandable::into_id).filter(|id| !id.is_empty())
}

/// Stripe's `metadata`: string values; null or absent is empty.
pub type Metadata = HashMap<String, String>;

/// A Stripe list (`{"object": "list", "data": [...]}`), null or absent being empty.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct List<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List { data: Vec::new() }
    }
}

/// Deserializes null as the type's default, for fields Stripe sends as null when empty.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests;
