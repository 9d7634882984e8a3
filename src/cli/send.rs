//! `paysteps send <name> --data '<json>'`: one application event, sent to the event API
//! as an Inngest SDK sends it, then the runs it started, read back from `/api/v1`.

use anyhow::{Context, anyhow, bail};
use clap::Args;
use reqwest::Url;
use serde_json::{Value, json};

use crate::config::parse_secrets;
use crate::engine::system_now_ms;

/// The key an Inngest SDK uses in development when none is configured.
const NO_EVENT_KEY: &str = "NO_EVENT_KEY_SET";

/// Options of `paysteps send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Event name, e.g. app/user.signed_up (`stripe/…` and `paysteps/…` are refused).
    pub name: String,
    /// The event's data: a JSON object.
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// Dedupe key: the same id again within 24 h is not stored twice and starts nothing.
    #[arg(long)]
    pub id: Option<String>,
    /// Base URL of the running server.
    #[arg(long, env = "PAYSTEPS_URL", default_value = "http://127.0.0.1:8288")]
    pub url: String,
    /// Event key (the first of a comma-separated list); `dev` accepts any.
    #[arg(long, env = "PAYSTEPS_EVENT_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let data: Value = serde_json::from_str(&args.data).context("--data is not JSON")?;
    if !data.is_object() {
        bail!("--data must be a JSON object, e.g. '{{\"user_id\":\"user_123\"}}'");
    }
    let mut event = json!({ "name": args.name, "data": data, "ts": system_now_ms() });
    if let Some(id) = &args.id {
        event["id"] = json!(id);
    }
    let key = args
        .key
        .as_deref()
        .map(parse_secrets)
        .and_then(|keys| keys.into_iter().next())
        .map_or_else(|| NO_EVENT_KEY.to_owned(), |key| key.expose().to_owned());
    let base = Url::parse(&args.url).with_context(|| format!("--url {} is not a URL", args.url))?;
    let url = endpoint(&base, &["e", &key])?;
    // The key is a credential: messages name the route, never the key.
    let shown = format!("{}/e/<key>", base.as_str().trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .user_agent(concat!("paysteps/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let response = client
        .post(url)
        .json(&json!([event]))
        .send()
        .await
        // reqwest's errors name the URL, which holds the key.
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("sending to {shown} (is `paysteps dev` running?)"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    // Read as the SDK reads it: done only with `"status": 200` and no `error`.
    if answer["status"] != 200 || !answer["error"].is_null() {
        let reason = answer["error"].as_str().unwrap_or(&text);
        let code = answer["code"].as_str().unwrap_or("");
        bail!("{shown} answered {status}: {reason} {code}");
    }
    let ids: Vec<String> = answer["ids"]
        .as_array()
        .ok_or_else(|| anyhow!("{shown} answered without ids: {text}"))?
        .iter()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    for id in &ids {
        println!("sent {} event {id}", args.name);
        runs_of(&client, &base, id, args.id.is_some()).await?;
    }
    Ok(())
}

/// Prints the runs an event started, from `GET /api/v1/events/{id}`. The id stays text:
/// it is only sent to the API, which also knows an event by the sender's id.
async fn runs_of(
    client: &reqwest::Client,
    base: &Url,
    event_id: &str,
    keyed: bool,
) -> anyhow::Result<()> {
    let url = endpoint(base, &["api", "v1", "events", event_id])?;
    let response = client.get(url.clone()).send().await;
    let event: Value = match response {
        Ok(response) if response.status().is_success() => response.json().await?,
        Ok(response) => {
            println!(
                "(could not list its runs: {url} answered {})",
                response.status()
            );
            return Ok(());
        }
        Err(err) => {
            println!("(could not list its runs: {err})");
            return Ok(());
        }
    };
    // A resent `--id` is answered with the first event's id: its runs are not new.
    let earlier = keyed && event["duplicates"].as_i64().unwrap_or(0) > 0;
    if earlier {
        println!("this id was already received within 24 h: nothing new started");
    }
    let runs = event["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() && !earlier {
        println!(
            "no runs started (no function is triggered by {})",
            event["name"].as_str().unwrap_or("this name")
        );
    }
    for run in runs {
        println!(
            "{}: {} ({}, {})",
            if earlier {
                "run of that event"
            } else {
                "run started"
            },
            run["id"].as_str().unwrap_or(""),
            run["function_id"].as_str().unwrap_or(""),
            run["status"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `base` with these path segments added (each percent-encoded).
fn endpoint(base: &Url, segments: &[&str]) -> anyhow::Result<Url> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| anyhow!("{base} cannot be a base URL"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}
