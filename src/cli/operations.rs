//! `paysteps runs`, `paysteps replay` and `paysteps cancel`: the operations API from the
//! command line, against a running server.

use std::io::{BufRead, Write};

use anyhow::bail;
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::api::ApiClient;

/// Where the server is and how to sign in to it.
#[derive(Debug, Args)]
pub struct Remote {
    /// Base URL of the running server.
    #[arg(long, env = "PAYSTEPS_URL", default_value = "http://127.0.0.1:8288")]
    pub url: String,
    /// The dashboard token (not needed for `paysteps dev` on loopback).
    #[arg(long, env = "PAYSTEPS_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Which runs: every option narrows the selection.
#[derive(Debug, Args)]
pub struct Filter {
    /// Run status(es), comma-separated: queued, running, sleeping, completed, failed, cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// Function id.
    #[arg(long)]
    pub function: Option<String>,
    /// Created at or after: a span back from now (15m, 1h, 7d) or epoch milliseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Created before: a span back from now or epoch milliseconds.
    #[arg(long)]
    pub until: Option<String>,
    /// Run id, event id, Stripe object id, customer id, or a customer's user id or email.
    #[arg(long)]
    pub search: Option<String>,
}

/// Options of `paysteps runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    #[doc(hidden)]
    #[command(flatten)]
    pub filter: Filter,
    /// Most runs listed.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[doc(hidden)]
    #[command(flatten)]
    pub remote: Remote,
}

/// Options of `paysteps replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The run to replay; without it, every run matching the filter (default status: failed).
    pub run_id: Option<String>,
    /// Run every step again instead of resuming at the failed step.
    #[arg(long)]
    pub from_start: bool,
    #[doc(hidden)]
    #[command(flatten)]
    pub filter: Filter,
    /// Replay a selection without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[doc(hidden)]
    #[command(flatten)]
    pub remote: Remote,
}

/// Options of `paysteps cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run to cancel; without it, every run matching the filter that has not ended.
    pub run_id: Option<String>,
    #[doc(hidden)]
    #[command(flatten)]
    pub filter: Filter,
    /// Cancel a selection without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[doc(hidden)]
    #[command(flatten)]
    pub remote: Remote,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.function.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.search.is_none()
    }

    fn body(&self) -> Value {
        json!({
            "status": self.status,
            "function": self.function,
            "since": self.since,
            "until": self.until,
            "search": self.search,
        })
    }
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

pub async fn runs(args: RunsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.remote.url, args.remote.token.as_deref())?;
    let f = &args.filter;
    let mut query = vec![("limit", args.limit.to_string())];
    for (key, value) in [
        ("status", &f.status),
        ("function", &f.function),
        ("since", &f.since),
        ("until", &f.until),
        ("q", &f.search),
    ] {
        if let Some(value) = value {
            query.push((key, value.clone()));
        }
    }
    let answer = client.call(Method::GET, &["runs"], &query, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let runs = answer["runs"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<38} {:<36} {:<10} {:<19} ERROR",
        "RUN", "FUNCTION", "STATUS", "CREATED"
    );
    for run in &runs {
        println!(
            "{:<38} {:<36} {:<10} {:<19} {}",
            run["id"].as_str().unwrap_or(""),
            run["function_id"].as_str().unwrap_or(""),
            run["status"].as_str().unwrap_or(""),
            time(run["created_at"].as_i64()),
            run["error"].as_str().unwrap_or(""),
        );
    }
    let counts = answer["counts"]
        .as_object()
        .map(|c| {
            c.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!(
        "{} shown of {} matching ({counts})",
        runs.len(),
        answer["total"]
    );
    Ok(())
}

/// Asks on the terminal; true only for "y" or "yes".
fn confirmed(question: &str) -> anyhow::Result<bool> {
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.remote.url, args.remote.token.as_deref())?;
    let mode = if args.from_start {
        "from_start"
    } else {
        "from_failure"
    };
    if let Some(run_id) = &args.run_id {
        let answer = one_run(
            &client,
            run_id,
            &args.filter,
            "replay",
            json!({ "mode": mode }),
        )
        .await?;
        println!(
            "replay started: {} (replay of {run_id}, {mode})",
            answer["run"]["id"].as_str().unwrap_or("")
        );
        return Ok(());
    }
    if args.filter.is_empty() {
        bail!("give a run id, or a filter such as --status failed --function <id> --since 1h");
    }
    let mut body = args.filter.body();
    body["mode"] = json!(mode);
    let Some(done) = bulk(
        &client,
        "replay",
        body,
        args.yes,
        &format!("replay {{}} runs ({mode})?"),
    )
    .await?
    else {
        println!("nothing replayed");
        return Ok(());
    };
    let ids = done["run_ids"].as_array().cloned().unwrap_or_default();
    for id in &ids {
        println!("replay started: {}", id.as_str().unwrap_or(""));
    }
    println!("replayed {} runs ({mode})", ids.len());
    Ok(())
}

/// `action` (`replay`, `cancel`) on the run `run_id`; refuses a filter given as well.
/// The id stays text as typed: the API it is sent to answers one that names no run.
async fn one_run(
    client: &ApiClient,
    run_id: &str,
    filter: &Filter,
    action: &str,
    body: Value,
) -> anyhow::Result<Value> {
    if !filter.is_empty() {
        bail!("give a run id or a filter (--status, --function, …), not both");
    }
    client
        .call(Method::POST, &["runs", run_id, action], &[], Some(body))
        .await
}

/// A bulk operation on the runs a filter selects: previews the count, asks (unless
/// `yes`), then acts on exactly that many; `None` when nothing matched or it was declined.
async fn bulk(
    client: &ApiClient,
    action: &str,
    mut body: Value,
    yes: bool,
    question: &str,
) -> anyhow::Result<Option<Value>> {
    let preview = client
        .call(Method::POST, &["runs", action], &[], Some(body.clone()))
        .await?;
    let matched = preview["matched"].as_i64().unwrap_or(0);
    println!("{matched} runs match");
    if matched == 0 || (!yes && !confirmed(&question.replace("{}", &matched.to_string()))?) {
        return Ok(None);
    }
    body["confirm"] = json!(true);
    body["expected"] = json!(matched);
    let done = client
        .call(Method::POST, &["runs", action], &[], Some(body))
        .await?;
    Ok(Some(done))
}

pub async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.remote.url, args.remote.token.as_deref())?;
    if let Some(run_id) = &args.run_id {
        let answer = one_run(&client, run_id, &args.filter, "cancel", json!({})).await?;
        println!(
            "cancelled {}",
            answer["run"]["id"].as_str().unwrap_or(run_id)
        );
        return Ok(());
    }
    if args.filter.is_empty() {
        bail!("give a run id, or a filter such as --function <id> --status queued");
    }
    let body = args.filter.body();
    let Some(done) = bulk(&client, "cancel", body, args.yes, "cancel {} runs?").await? else {
        println!("nothing cancelled");
        return Ok(());
    };
    println!(
        "cancelled {} runs",
        done["run_ids"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}
