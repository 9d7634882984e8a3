//! `paysteps trigger <event-type>`: a fixture made into a fresh, signed delivery.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};

use super::server::DEV_SECRET_KEY;
use crate::config::parse_secrets;
use crate::engine::system_now_ms;
use crate::store::{Store, redact_url, sqlite_path};
use crate::stripe::fixtures::{self, Overrides};
use crate::stripe::signer;

/// Options of `paysteps trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// Stripe event type, e.g. checkout.session.completed or invoice.payment_failed.
    pub event_type: String,
    /// Base URL of the running server.
    #[arg(long, env = "PAYSTEPS_URL", default_value = "http://127.0.0.1:8288")]
    pub url: String,
    /// Signing secret; by default STRIPE_WEBHOOK_SECRET, else the one `dev` keeps in its database.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The dev server's database, read for its generated secret.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "paysteps.db"
    )]
    pub db: String,
    /// Checkout mode, for checkout.session.completed.
    #[doc(hidden)]
    #[arg(long, value_enum, default_value_t = Mode::Subscription)]
    pub mode: Mode,
    /// Replace the fixture's user id (user_123).
    #[arg(long)]
    pub user: Option<String>,
    /// Replace the fixture's customer id (cus_QXg1o8vcGmoR32).
    #[arg(long)]
    pub customer: Option<String>,
    /// Replace the fixture's subscription id (sub_1Pgc6rB7WZ01zgkWNy0Cn5nw): a canceled
    /// subscription is never revived, so a new story needs a new subscription.
    #[arg(long)]
    pub subscription: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    Subscription,
    Payment,
}

pub async fn run(args: TriggerArgs) -> anyhow::Result<()> {
    let name = match (args.event_type.as_str(), args.mode) {
        ("checkout.session.completed", Mode::Payment) => "checkout.session.completed.payment",
        (other, _) => other,
    };
    let template = fixtures::fixture(name).ok_or_else(|| {
        let known: Vec<_> = fixtures::names().collect();
        anyhow!(
            "no fixture for '{}'; known: {}",
            args.event_type,
            known.join(", ")
        )
    })?;
    let secret = resolve_secret(&args).await?;
    let now = system_now_ms() / 1000;
    let event = fixtures::build_event(
        template,
        &Overrides {
            created: Some(now),
            user: args.user.clone(),
            customer: args.customer.clone(),
            subscription: args.subscription.clone(),
            ..Overrides::default()
        },
    );
    let body = serde_json::to_vec(&event)?;
    let url = webhook_url(&args.url);
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("stripe-signature", signer::sign(&secret, &body, now))
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending to {url} (is `paysteps dev` running?)"))?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{url} answered {status}: {answer}");
    }
    println!(
        "sent {} {}",
        args.event_type,
        event["id"].as_str().unwrap_or("")
    );
    let runs = answer["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        println!("no runs started (no function handles this type, or a duplicate)");
    }
    for run in runs {
        println!("run started: {}", run.as_str().unwrap_or(""));
    }
    Ok(())
}

fn webhook_url(base: &str) -> String {
    if base.ends_with("/api/stripe/webhook") {
        base.to_owned()
    } else {
        format!("{}/api/stripe/webhook", base.trim_end_matches('/'))
    }
}

async fn resolve_secret(args: &TriggerArgs) -> anyhow::Result<String> {
    if let Some(secret) = args
        .secret
        .as_deref()
        .map(parse_secrets)
        .and_then(|s| s.into_iter().next())
    {
        return Ok(secret.expose().to_owned());
    }
    let file = sqlite_path(&args.db).unwrap_or(Path::new(&args.db));
    let path = file.to_string_lossy();
    if !file.exists() {
        bail!(
            "no --secret given and no dev database at {}: start `paysteps dev` first",
            redact_url(&path)
        );
    }
    let store = Store::connect(&args.db).await?;
    let secret = store.setting(DEV_SECRET_KEY).await?;
    store.close().await;
    secret.ok_or_else(|| anyhow!("{} holds no dev secret: pass --secret", redact_url(&path)))
}
