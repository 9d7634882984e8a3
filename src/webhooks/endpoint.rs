//! An endpoint: where a team wants its events, which ones, and whether it receives them;
//! and the changes made to stored endpoints, each in a transaction of its own.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::events::EventType;
use super::repo::{self, NewEndpoint};
use crate::config::Secret;
use crate::engine::new_id;
use crate::store::{Error as StoreError, Store, Write};

/// What an endpoint subscribes to: every type, or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Every event type, now and to come (`["*"]`).
    All,
    /// Only these type names (e.g. `payment.failed`).
    Only(BTreeSet<String>),
}

/// The token that subscribes to every type.
pub const ALL_EVENTS: &str = "*";

impl Subscription {
    /// Reads a list of type names; empty or containing `*` means all.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Subscription, EndpointError> {
        let mut only = BTreeSet::new();
        for name in names {
            let name = name.as_ref().trim();
            if name == ALL_EVENTS {
                return Ok(Subscription::All);
            }
            let t: EventType = name
                .parse()
                .map_err(|_| EndpointError::UnknownEventType(name.to_owned()))?;
            only.insert(t.as_str().to_owned());
        }
        Ok(if only.is_empty() {
            Subscription::All
        } else {
            Subscription::Only(only)
        })
    }

    /// Reads the stored JSON array (unknown text subscribes to nothing).
    pub fn from_stored(text: &str) -> Subscription {
        let names: Vec<String> = serde_json::from_str(text).unwrap_or_default();
        if names.iter().any(|n| n == ALL_EVENTS) {
            return Subscription::All;
        }
        Subscription::Only(names.into_iter().collect())
    }

    /// Whether events of `event_type` are delivered to the endpoint.
    pub fn includes(&self, event_type: EventType) -> bool {
        match self {
            Subscription::All => true,
            Subscription::Only(names) => names.contains(event_type.as_str()),
        }
    }

    /// The list as stored and shown: `["*"]` or the type names.
    pub fn names(&self) -> Vec<String> {
        match self {
            Subscription::All => vec![ALL_EVENTS.to_owned()],
            Subscription::Only(names) => names.iter().cloned().collect(),
        }
    }

    /// The list as stored: a JSON array of type names, `["*"]` for all.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(&self.names()).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// Whether an endpoint receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    /// Receives the events it subscribes to.
    Active,
    /// Paused by its owner: no new deliveries, pending ones stop.
    Paused,
    /// Disabled by paysteps (410 Gone, or no success for 5 days) until re-activated.
    Disabled,
}

impl EndpointStatus {
    /// The status as stored and shown: `active`, `paused` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Active => "active",
            EndpointStatus::Paused => "paused",
            EndpointStatus::Disabled => "disabled",
        }
    }

    /// Reads a stored status; anything unknown counts as disabled.
    pub fn from_stored(text: &str) -> EndpointStatus {
        match text {
            "active" => EndpointStatus::Active,
            "paused" => EndpointStatus::Paused,
            _ => EndpointStatus::Disabled,
        }
    }
}

/// Why an endpoint definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The URL does not parse as an absolute URL; holds the parser's reason.
    #[error("url is not a valid absolute URL: {0}")]
    InvalidUrl(String),
    /// The URL is longer than [`MAX_URL_BYTES`]; holds its length in bytes.
    #[error("url is {0} bytes long; at most {MAX_URL_BYTES} are accepted")]
    UrlTooLong(usize),
    /// The URL's scheme is neither `http` nor `https`; holds the scheme.
    #[error("url must use http or https, not {0}")]
    UnsupportedScheme(String),
    /// The URL carries a user name or password.
    #[error("url must not carry credentials (user:password@)")]
    CredentialsInUrl,
    /// A subscribed type name is not a known [`EventType`]; holds the name.
    #[error(
        "unknown event type '{0}'; known: subscription.activated, subscription.updated, \
         subscription.canceled, payment.succeeded, payment.failed, invoice.paid, \
         invoice.payment_failed, run.failed, endpoint.disabled, or * for all"
    )]
    UnknownEventType(String),
    /// The URL's host may not receive deliveries.
    #[error("{0}")]
    Destination(#[from] super::destination::DestinationError),
    /// The description exceeds 500 characters.
    #[error("description is longer than 500 characters")]
    DescriptionTooLong,
}

impl EndpointError {
    /// A stable code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            EndpointError::InvalidUrl(_)
            | EndpointError::UnsupportedScheme(_)
            | EndpointError::CredentialsInUrl => "invalid_url",
            EndpointError::UrlTooLong(_) => "url_too_long",
            EndpointError::UnknownEventType(_) => "unknown_event_type",
            EndpointError::Destination(_) => "destination_refused",
            EndpointError::DescriptionTooLong => "invalid_description",
        }
    }
}

/// The longest endpoint URL accepted, in bytes, as given and once normalised (what
/// browsers and most HTTP servers accept).
pub const MAX_URL_BYTES: usize = 2048;

/// Parses and checks an endpoint URL's form (the address it names is checked apart).
pub fn parse_url(text: &str) -> Result<reqwest::Url, EndpointError> {
    let text = text.trim();
    if text.len() > MAX_URL_BYTES {
        return Err(EndpointError::UrlTooLong(text.len()));
    }
    let url =
        reqwest::Url::parse(text).map_err(|e| EndpointError::InvalidUrl(format!("{text}: {e}")))?;
    // Percent-encoding can make the stored form longer than the given one.
    if url.as_str().len() > MAX_URL_BYTES {
        return Err(EndpointError::UrlTooLong(url.as_str().len()));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EndpointError::UnsupportedScheme(url.scheme().to_owned()));
    }
    if url.host().is_none() {
        return Err(EndpointError::InvalidUrl(format!("{text}: no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::CredentialsInUrl);
    }
    Ok(url)
}

/// A new endpoint just stored: its id and its signing secret, which is answered once.
#[derive(Debug, Clone)]
pub struct Created {
    /// The endpoint's id, `whep_…`.
    pub id: String,
    /// The signing secret, `whsec_…`.
    pub secret: Secret,
}

/// Stores a new, active endpoint with a fresh id and secret. The URL and description are
/// taken as given: check them with [`parse_url`] and the destinations first.
pub async fn create(
    store: &Store,
    url: String,
    events: &Subscription,
    description: Option<String>,
    now: i64,
) -> Result<Created, StoreError> {
    let endpoint = NewEndpoint {
        id: new_id("whep"),
        url,
        description,
        events: events.to_stored(),
        secret: super::secret::generate(),
    };
    let created = Created {
        id: endpoint.id.clone(),
        secret: endpoint.secret.clone(),
    };
    store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move { repo::insert_endpoint(tx, &endpoint, now).await })
        })
        .await?;
    Ok(created)
}

/// What an update changes on an endpoint; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// A new URL, already checked.
    pub url: Option<String>,
    /// A new subscription.
    pub events: Option<Subscription>,
    /// A new description, already checked.
    pub description: Option<String>,
    /// A new status.
    pub status: Option<EndpointStatus>,
}

/// Applies `change` to the endpoint `id` in one transaction. False when there is none.
pub async fn update(store: &Store, id: &str, change: Change, now: i64) -> Result<bool, StoreError> {
    let id = id.to_owned();
    store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                let events = change.events.as_ref().map(Subscription::to_stored);
                let found =
                    repo::update_endpoint(tx, &id, change.url, events, change.description, now)
                        .await?;
                if let Some(status) = change.status {
                    repo::set_status(tx, &id, status, None, now).await?;
                }
                Ok(found)
            })
        })
        .await
}

/// Sets the endpoint's status (pause, or re-activate a paused or disabled one). False when
/// there is no such endpoint.
pub async fn set_status(
    store: &Store,
    id: &str,
    status: EndpointStatus,
    now: i64,
) -> Result<bool, StoreError> {
    let id = id.to_owned();
    store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move { repo::set_status(tx, &id, status, None, now).await })
        })
        .await
}

/// Deletes the endpoint with its deliveries and their attempts. False when there is none.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let id = id.to_owned();
    store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move { repo::delete_endpoint(tx, &id).await })
        })
        .await
}

/// A secret rotation: the new secret, answered once, and when the previous one stops
/// signing.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The new signing secret, `whsec_…`.
    pub secret: Secret,
    /// When the previous secret stops signing, in milliseconds since the Unix epoch.
    pub previous_secret_expires_at: i64,
}

/// Gives the endpoint a fresh secret; the previous one keeps signing for
/// [`ROTATION_OVERLAP_MS`](super::secret::ROTATION_OVERLAP_MS). `None` when there is no
/// such endpoint.
pub async fn rotate_secret(
    store: &Store,
    id: &str,
    now: i64,
) -> Result<Option<Rotated>, StoreError> {
    let secret = super::secret::generate();
    let (id, fresh) = (id.to_owned(), secret.clone());
    let until = store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move { repo::rotate_secret(tx, &id, &fresh, now).await })
        })
        .await?;
    Ok(until.map(|until| Rotated {
        secret,
        previous_secret_expires_at: until,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse_and_match() {
        let s = Subscription::parse(&["payment.failed", " subscription.updated"]).unwrap();
        assert!(s.includes(EventType::PaymentFailed));
        assert!(!s.includes(EventType::InvoicePaid));
        assert_eq!(Subscription::from_stored(&s.to_stored()), s);
        assert_eq!(Subscription::parse::<&str>(&[]).unwrap(), Subscription::All);
        assert_eq!(
            Subscription::parse(&["payment.failed", "*"]).unwrap(),
            Subscription::All
        );
        assert_eq!(
            Subscription::parse(&["payment.refunded"]),
            Err(EndpointError::UnknownEventType("payment.refunded".into()))
        );
    }

    #[test]
    fn urls_must_be_plain_http() {
        assert!(parse_url("https://crm.example.com/hooks").is_ok());
        assert_eq!(parse_url("ftp://x").unwrap_err().code(), "invalid_url");
        assert_eq!(
            parse_url("https://u:p@example.com/").unwrap_err(),
            EndpointError::CredentialsInUrl
        );
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn urls_are_at_most_2048_bytes_given_and_stored() {
        let base = "https://crm.example.com/";
        let longest = format!("{base}{}", "a".repeat(MAX_URL_BYTES - base.len()));
        assert!(parse_url(&longest).is_ok());
        let longer = format!("{longest}a");
        assert_eq!(
            parse_url(&longer),
            Err(EndpointError::UrlTooLong(MAX_URL_BYTES + 1))
        );
        assert_eq!(parse_url(&longer).unwrap_err().code(), "url_too_long");
        // 824 bytes as given, 2,424 once percent-encoded.
        let encoded = format!("{base}{}", "é".repeat(400));
        assert_eq!(parse_url(&encoded).unwrap_err().code(), "url_too_long");
    }
}
