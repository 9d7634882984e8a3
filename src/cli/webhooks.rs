//! `paysteps webhooks …`: manage a running server's outgoing webhook endpoints through
//! its JSON API.

use clap::{Args, Subcommand};
use reqwest::Method;

use super::api::ApiClient;
use serde_json::{Value, json};

/// Options of `paysteps webhooks`: the server to manage and what to do.
#[derive(Debug, Args)]
pub struct WebhooksArgs {
    /// Base URL of the running server.
    #[arg(
        long,
        env = "PAYSTEPS_URL",
        default_value = "http://127.0.0.1:8288",
        global = true
    )]
    pub url: String,
    /// Bearer token for `/api/v1` (the server's dashboard token).
    #[arg(
        long,
        env = "PAYSTEPS_DASHBOARD_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    #[doc(hidden)]
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Add an endpoint; prints its signing secret, shown only this once.
    Add {
        /// Where to POST events, e.g. https://crm.example.com/paysteps.
        endpoint: String,
        /// Event types, comma-separated (e.g. payment.failed,subscription.updated); all when omitted.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List endpoints.
    List,
    /// Show an endpoint with its success rate and recent deliveries.
    Show { id: String },
    /// Delete an endpoint.
    Rm { id: String },
    /// Make a new signing secret; the old one keeps signing for 24 hours.
    Rotate { id: String },
    /// Stop delivering to an endpoint.
    Pause { id: String },
    /// Deliver to a paused or disabled endpoint again.
    Resume { id: String },
    /// Deliver a delivery's event again (same webhook-id and body).
    Resend { delivery_id: String },
}

pub async fn run(args: WebhooksArgs) -> anyhow::Result<()> {
    let api = ApiClient::new(&args.url, args.token.as_deref())?;
    match args.command {
        WebhooksCommand::Add {
            endpoint,
            events,
            description,
        } => {
            let body = json!({ "url": endpoint, "events": events, "description": description });
            let created = api
                .call(Method::POST, &["webhooks"], &[], Some(body))
                .await?;
            println!("added {}", line(&created));
            println!(
                "signing secret (shown once): {}",
                created["secret"].as_str().unwrap_or_default()
            );
        }
        WebhooksCommand::List => {
            let list = api.call(Method::GET, &["webhooks"], &[], None).await?;
            let rows = list["data"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no webhook endpoints");
            }
            for row in rows {
                println!("{}", line(&row));
            }
        }
        WebhooksCommand::Show { id } => {
            let shown = api.call(Method::GET, &["webhooks", &id], &[], None).await?;
            println!("{}", line(&shown));
            let stats = &shown["stats"];
            println!(
                "  success rate {} ({} of {} finished deliveries)",
                stats["success_rate"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
                stats["succeeded"],
                stats["finished_deliveries"]
            );
            for d in shown["recent_deliveries"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {}  {}  {} attempt(s)  last {}",
                    d["id"].as_str().unwrap_or_default(),
                    d["event_type"].as_str().unwrap_or_default(),
                    d["status"].as_str().unwrap_or_default(),
                    d["attempt_count"],
                    d["last_status_code"]
                );
            }
        }
        WebhooksCommand::Rm { id } => {
            api.call(Method::DELETE, &["webhooks", &id], &[], None)
                .await?;
            println!("deleted {id}");
        }
        WebhooksCommand::Rotate { id } => {
            let rotated = api
                .call(Method::POST, &["webhooks", &id, "rotate"], &[], None)
                .await?;
            println!(
                "new signing secret for {id} (shown once): {}",
                rotated["secret"].as_str().unwrap_or_default()
            );
            println!("the previous secret keeps signing for 24 hours");
        }
        WebhooksCommand::Pause { id } => {
            let row = api
                .call(Method::POST, &["webhooks", &id, "pause"], &[], None)
                .await?;
            println!("{}", line(&row));
        }
        WebhooksCommand::Resume { id } => {
            let row = api
                .call(Method::POST, &["webhooks", &id, "resume"], &[], None)
                .await?;
            println!("{}", line(&row));
        }
        WebhooksCommand::Resend { delivery_id } => {
            let queued = api
                .call(
                    Method::POST,
                    &["webhook-deliveries", &delivery_id, "resend"],
                    &[],
                    None,
                )
                .await?;
            println!(
                "queued delivery {} of {} (run {})",
                queued["id"].as_str().unwrap_or_default(),
                queued["webhook_id"].as_str().unwrap_or_default(),
                queued["run_id"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// One endpoint on one line: id, status, URL, events.
fn line(row: &Value) -> String {
    let events: Vec<&str> = row["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{}  {}  {}  [{}]",
        row["id"].as_str().unwrap_or_default(),
        row["status"].as_str().unwrap_or_default(),
        row["url"].as_str().unwrap_or_default(),
        events.join(",")
    )
}
