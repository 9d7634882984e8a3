//! A client of a running server's `/api/v1`, for the commands that manage it remotely.

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// Calls `/api/v1` on one server, with the dashboard credential when there is one.
pub(super) struct ApiClient {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the server at `base` (`http://127.0.0.1:8288`).
    pub fn new(base: &str, token: Option<&str>) -> anyhow::Result<ApiClient> {
        let base = Url::parse(base).with_context(|| format!("--url {base} is not a URL"))?;
        if base.cannot_be_a_base() {
            bail!("--url {base} cannot be a base");
        }
        Ok(ApiClient {
            base,
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
            http: reqwest::Client::builder()
                .user_agent(concat!("paysteps/", env!("CARGO_PKG_VERSION")))
                .build()?,
        })
    }

    /// Calls `/api/v1/<segments…>` (each segment percent-encoded) with `query`, and
    /// returns the JSON answer, or fails with the server's error message.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url} (is paysteps running?)"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = answer["error"]["message"].as_str().unwrap_or(&text);
            if status == StatusCode::UNAUTHORIZED {
                bail!("{status}: {message} (pass --token or set PAYSTEPS_DASHBOARD_TOKEN)");
            }
            bail!("{url} answered {status}: {message}");
        }
        Ok(answer)
    }
}
