//! paysteps' requests to an app: the sync (`PUT`) and the calls that run its functions
//! (`POST`), each body canonical JSON, signed when paysteps has a signing key.
//!
//! Redirects are never followed: paysteps calls only the URLs it was given, so an app
//! cannot send it to another host.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, Url};
use serde::Serialize;
use serde_json::json;

use super::config::Registration;
use super::protocol::{Answer, CallRequest, read_answer};
use super::signing::{SigningKeys, canonical};

/// Longest an app may take to answer a sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a call may take: as long as a step may run, as in Inngest.
const CALL_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// Largest answer read from an app.
const MAX_ANSWER: usize = 8 << 20;

/// Talks to apps on paysteps' behalf.
#[derive(Clone, Debug)]
pub struct AppClient {
    http: Client,
    keys: Option<SigningKeys>,
}

/// What a sync got back.
#[derive(Debug)]
pub enum Synced {
    /// The app answered with its registration (in-band sync), read and as sent.
    InBand(Box<Registration>, Vec<u8>),
    /// The app registers itself by calling `POST /fn/register` (out-of-band sync).
    OutOfBand,
}

/// Why a request to an app failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the app could not be reached: {0}")]
    Unreachable(String),
    #[error("the app answered the sync with {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the app's registration could not be read: {0}")]
    Unreadable(String),
}

impl AppClient {
    /// A client that signs with `keys` when given; without them it talks to apps in
    /// the SDK's dev mode, which checks no signature.
    pub fn new(keys: Option<SigningKeys>) -> AppClient {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("the HTTP client builds");
        AppClient { http, keys }
    }

    fn server_kind(&self) -> &'static str {
        if self.keys.is_some() { "cloud" } else { "dev" }
    }

    /// Canonical bytes of `body` and the headers every request carries.
    fn signed<T: Serialize>(&self, body: &T) -> Result<(Vec<u8>, HeaderMap), ClientError> {
        let bytes = canonical(body).map_err(|e| ClientError::Unreadable(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            "x-inngest-server-kind",
            HeaderValue::from_static(self.server_kind()),
        );
        if let Some(keys) = &self.keys {
            let signature = keys.current().sign(&bytes, chrono::Utc::now().timestamp());
            headers.insert(
                "x-inngest-signature",
                HeaderValue::from_str(&signature).expect("a signature is ASCII"),
            );
        }
        Ok((bytes, headers))
    }

    /// Asks the app at `url` for its registration, in band: the app answers with it.
    /// An app that does not sync in band registers itself through `/fn/register`.
    pub async fn sync(&self, url: &Url) -> Result<Synced, ClientError> {
        let (body, mut headers) = self.signed(&json!({ "url": url.as_str() }))?;
        headers.insert("x-inngest-sync-kind", HeaderValue::from_static("in_band"));
        let response = self
            .http
            .put(url.clone())
            .headers(headers)
            .body(body)
            .timeout(SYNC_TIMEOUT)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let in_band = response
            .headers()
            .get("x-inngest-sync-kind")
            .is_some_and(|v| v == "in_band");
        let bytes = read_limited(response).await?;
        if !status.is_success() {
            return Err(ClientError::Refused {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned(),
            });
        }
        if !in_band {
            return Ok(Synced::OutOfBand);
        }
        serde_json::from_slice(&bytes)
            .map(|r| Synced::InBand(Box::new(r), bytes))
            .map_err(|e| ClientError::Unreadable(e.to_string()))
    }

    /// Calls the function at `url` for `step_id` (`step` for discovery, or a planned
    /// step's hashed id). An app that cannot be reached, or whose answer breaks off, is
    /// [`Answer::Unreachable`]; a request paysteps cannot make is a retriable error.
    pub async fn call(
        &self,
        url: &Url,
        step_id: &str,
        request: &CallRequest,
    ) -> (Answer, Option<i64>) {
        match self.try_call(url, step_id, request).await {
            Ok(answer) => answer,
            Err(ClientError::Unreachable(message)) => (Answer::Unreachable(message), None),
            Err(err) => (
                Answer::Error {
                    error: super::protocol::sdk_error("Error", &err.to_string()),
                    retriable: true,
                    retry_after: None,
                },
                None,
            ),
        }
    }

    async fn try_call(
        &self,
        url: &Url,
        step_id: &str,
        request: &CallRequest,
    ) -> Result<(Answer, Option<i64>), ClientError> {
        let mut target = url.clone();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "stepId")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        target
            .query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("stepId", step_id);
        let (body, mut headers) = self.signed(request)?;
        let header =
            |v: &str| HeaderValue::from_str(v).map_err(|e| ClientError::Unreadable(e.to_string()));
        headers.insert("x-run-id", header(&request.ctx.run_id)?);
        headers.insert("x-inngest-step-id", header(step_id)?);
        if request.version >= 0 {
            headers.insert(
                "x-inngest-req-version",
                header(&request.version.to_string())?,
            );
        }
        let response = self
            .http
            .post(target)
            .headers(headers)
            .body(body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_limited(response).await?;
        Ok(read_answer(status, &headers, &bytes))
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ClientError::Unreachable(error_chain(&e)))?
    {
        if bytes.len() + chunk.len() > MAX_ANSWER {
            return Err(ClientError::Unreadable(format!(
                "the answer is larger than {} MiB",
                MAX_ANSWER >> 20
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// An error with its causes, which reqwest keeps apart (`error sending request` alone
/// says nothing).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
