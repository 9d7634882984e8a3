//! The Stripe API, asked for an object's current state: Stripe's advice for
//! order-sensitive state is to treat an event as a notification and retrieve the object.
//! A restricted key with read access to the objects asked for is enough.

use std::time::Duration;

use serde_json::Value;

/// Where Stripe's API is, unless `STRIPE_API_BASE` says otherwise.
pub const DEFAULT_BASE: &str = "https://api.stripe.com";

/// How long one request may take before it is given up (and retried by its step).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// A client of the Stripe API with one secret or restricted key.
#[derive(Clone)]
pub struct StripeApi {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Why a request to the Stripe API gave no object.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Stripe asked to slow down (429) or failed (5xx): worth asking again later.
    #[error("the Stripe API answered {status}: {message}")]
    Unavailable {
        /// The HTTP status.
        status: u16,
        /// Stripe's error message, or the body's start.
        message: String,
    },
    /// No answer in time, or no connection.
    #[error("the Stripe API did not answer: {0}")]
    Unreachable(String),
    /// The request was refused (a wrong key, a missing permission, no such object):
    /// asking again will not help.
    #[error("the Stripe API refused the request ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Stripe's error message, or the body's start.
        message: String,
    },
}

impl ApiError {
    /// Whether the same request may succeed later.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, ApiError::Refused { .. })
    }
}

impl StripeApi {
    /// A client for `base` (e.g. [`DEFAULT_BASE`]) with `key` (`sk_…` or `rk_…`).
    pub fn new(base: &str, key: &str) -> StripeApi {
        Self::with_timeout(base, key, DEFAULT_TIMEOUT)
    }

    /// [`StripeApi::new`] giving up on a request after `timeout`.
    pub fn with_timeout(base: &str, key: &str, timeout: Duration) -> StripeApi {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        StripeApi {
            client,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    /// The subscription `id` as it is now, in the API version of the account (or of the
    /// connected `account`, asked with the `Stripe-Account` header).
    pub async fn subscription(&self, id: &str, account: Option<&str>) -> Result<Value, ApiError> {
        self.retrieve(&format!("v1/subscriptions/{id}"), account)
            .await
    }

    async fn retrieve(&self, path: &str, account: Option<&str>) -> Result<Value, ApiError> {
        let mut request = self
            .client
            .get(format!("{}/{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(account) = account {
            request = request.header("Stripe-Account", account);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ApiError::Unreachable(e.without_url().to_string()))?;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return parsed.ok_or_else(|| ApiError::Unavailable {
                status: status.as_u16(),
                message: "the answer is not JSON".into(),
            });
        }
        let message = parsed
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into());
        let status = status.as_u16();
        if status == 429 || status >= 500 {
            Err(ApiError::Unavailable { status, message })
        } else {
            Err(ApiError::Refused { status, message })
        }
    }
}
