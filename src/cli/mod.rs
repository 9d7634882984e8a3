//! The command line: `dev`, `serve`, `migrate`, `trigger`, `send`, `runs`, `replay`, `cancel`,
//! `prune`, `backup`.
//!
//! A program parses a [`Cli`] (`Cli::parse()`) and hands it to [`run`] or [`run_with`]. Each
//! [`Command`] holds its command's arguments; their options are documented by
//! `paysteps <command> --help` and the README, and the fields holding internal settings are
//! not part of the API.

mod api;
mod logging;
mod operations;
mod send;
mod server;
mod trigger;
mod upkeep;
mod webhooks;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use logging::{UnknownLogFormat, init_logging};
pub use operations::{CancelArgs, ReplayArgs, RunsArgs};
pub use send::SendArgs;
#[doc(hidden)]
pub use server::serve_until;
pub use trigger::TriggerArgs;
pub use upkeep::{BackupArgs, PruneArgs};
pub use webhooks::WebhooksArgs;

/// The command line: one of the [`Command`]s.
#[derive(Debug, Parser)]
#[command(
    name = "paysteps",
    version,
    about = "Stripe webhooks as durable, replayable step functions"
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// What `paysteps` is asked to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Local development: embedded SQLite, loopback, a generated webhook secret.
    Dev(DevArgs),
    /// Production: refuses to start without a webhook secret and a dashboard credential.
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DbArgs),
    /// Send a realistic, correctly signed Stripe event to a running server.
    Trigger(trigger::TriggerArgs),
    /// Send an application event to a running server's event API, as an Inngest SDK would.
    Send(send::SendArgs),
    /// Manage outgoing webhook endpoints of a running server.
    Webhooks(webhooks::WebhooksArgs),
    /// List runs of a running server, newest first, with counts per status.
    Runs(operations::RunsArgs),
    /// Replay a run (resuming at its failed step, or --from-start), or every run matching a filter.
    Replay(operations::ReplayArgs),
    /// Cancel a run that has not ended, or every such run matching a filter.
    Cancel(operations::CancelArgs),
    /// Delete what ended longer ago than the retention once, and print what went (or, with --dry-run, what would).
    Prune(upkeep::PruneArgs),
    /// Copy a live SQLite database to a new file (for PostgreSQL, use pg_dump).
    Backup(upkeep::BackupArgs),
}

/// Settings shared by `dev` and `serve`.
#[doc(hidden)]
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Stripe webhook signing secret(s), comma-separated while rolling a secret.
    #[arg(
        long = "webhook-secret",
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    /// Largest accepted gap between the signature's timestamp and now, in seconds.
    #[arg(long, env = "STRIPE_WEBHOOK_TOLERANCE_SECS", default_value_t = 300)]
    pub tolerance_secs: u64,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, env = "PAYSTEPS_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Runs executed at once by this process.
    #[arg(long, env = "PAYSTEPS_WORKERS", default_value_t = 32)]
    pub workers: usize,
    /// Seconds a worker's claim on a run lasts without renewal.
    #[arg(long, env = "PAYSTEPS_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Let outgoing webhooks reach loopback, private, link-local and metadata addresses
    /// (`dev` always does).
    #[arg(
        long,
        env = "PAYSTEPS_WEBHOOK_ALLOW_PRIVATE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub webhook_allow_private: bool,
    /// Subscription statuses that entitle a user, comma-separated (`active,trialing`;
    /// businesses that keep access through dunning add `past_due`).
    #[arg(
        long = "entitled-statuses",
        env = "PAYSTEPS_ENTITLED_STATUSES",
        default_value = "active,trialing",
        value_parser = crate::payments::repo::Entitlement::parse
    )]
    pub entitled_statuses: crate::payments::repo::Entitlement,
    /// Process only `live` or only `test` Stripe events; the other mode's are stored and
    /// acknowledged but start nothing. Unset, both are processed.
    #[arg(long = "stripe-mode", env = "STRIPE_MODE", value_enum)]
    pub stripe_mode: Option<crate::stripe::Mode>,
    /// A Stripe secret or restricted (read-only) key: the subscription functions then
    /// store each subscription as the Stripe API answers it, whatever the delivery order.
    #[arg(
        long = "stripe-api-key",
        env = "STRIPE_API_KEY",
        hide_env_values = true
    )]
    pub stripe_api_key: Option<String>,
    /// Where the Stripe API is (a stand-in for tests).
    #[arg(long = "stripe-api-base", env = "STRIPE_API_BASE", default_value = crate::stripe::api::DEFAULT_BASE)]
    pub stripe_api_base: String,
    /// The HTTP server's time limits and caps.
    #[command(flatten)]
    pub limits: server::LimitArgs,
    /// Days what ended (runs, their steps and history, events, webhook deliveries) is
    /// kept before the daily retention function deletes it; 0 keeps it for ever.
    #[arg(
        long = "retention-days",
        env = "PAYSTEPS_RETENTION_DAYS",
        default_value = "30",
        allow_hyphen_values = true,
        value_parser = crate::retention::Retention::parse
    )]
    pub retention: crate::retention::Retention,
    /// The URLs of SDK apps whose functions paysteps runs, e.g.
    /// `http://127.0.0.1:3000/api/inngest`; repeat the flag, or separate with commas.
    #[arg(long = "app-url", env = "PAYSTEPS_APP_URLS", value_delimiter = ',')]
    pub app_urls: Vec<reqwest::Url>,
    /// The signing key SDK apps share with paysteps (`signkey-<env>-<hex>`): requests to
    /// them are signed with it, and they prove themselves with it. Required by `serve`
    /// when it runs SDK apps.
    #[arg(
        long = "signing-key",
        env = "PAYSTEPS_SIGNING_KEY",
        hide_env_values = true,
        value_parser = crate::apps::SigningKey::parse
    )]
    pub signing_key: Option<crate::apps::SigningKey>,
    /// The previous signing key, still accepted while apps move to the new one.
    #[arg(
        long = "signing-key-fallback",
        env = "PAYSTEPS_SIGNING_KEY_FALLBACK",
        hide_env_values = true,
        value_parser = crate::apps::SigningKey::parse
    )]
    pub signing_key_fallback: Option<crate::apps::SigningKey>,
}

impl EngineArgs {
    /// The SDK apps to run functions of, or `None` when no `--app-url` is given.
    pub fn apps(&self, engine: &crate::engine::Engine) -> Option<crate::apps::Apps> {
        if self.app_urls.is_empty() {
            return None;
        }
        let keys = self
            .signing_key
            .clone()
            .map(|key| crate::apps::SigningKeys::new(key, self.signing_key_fallback.clone()));
        Some(crate::apps::Apps::new(
            engine.clone(),
            self.app_urls.clone(),
            keys,
        ))
    }

    /// The Stripe API client, when a key is given.
    pub fn stripe_api(&self) -> Option<crate::stripe::api::StripeApi> {
        self.stripe_api_key
            .as_deref()
            .filter(|key| !key.trim().is_empty())
            .map(|key| crate::stripe::api::StripeApi::new(&self.stripe_api_base, key.trim()))
    }
}

/// Options of `paysteps dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, env = "PAYSTEPS_BIND", default_value = "127.0.0.1:8288")]
    pub bind: String,
    /// SQLite file (or database URL).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "paysteps.db"
    )]
    pub db: String,
    /// Credential for the dashboard and `/api/v1`: optional on a loopback address,
    /// required on any other.
    #[arg(long, env = "PAYSTEPS_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
    /// Webhook and worker settings.
    #[doc(hidden)]
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Host names, sign-ins and cookies.
    #[doc(hidden)]
    #[command(flatten)]
    pub access: crate::http::access::AccessArgs,
}

/// Options of `paysteps serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PAYSTEPS_BIND", default_value = "0.0.0.0:8288")]
    pub bind: String,
    /// Database URL (required).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub db: Option<String>,
    /// Credential for the dashboard and `/api/v1`.
    #[arg(long, env = "PAYSTEPS_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
    /// Keys accepted by the event API (`POST /e/{key}`), comma-separated; with none,
    /// every key is refused.
    #[arg(long = "event-key", env = "PAYSTEPS_EVENT_KEY", hide_env_values = true)]
    pub event_key: Option<String>,
    /// Webhook and worker settings.
    #[doc(hidden)]
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Host names, sign-ins and cookies.
    #[doc(hidden)]
    #[command(flatten)]
    pub access: crate::http::access::AccessArgs,
}

/// The database a command opens: `migrate`'s only option, shared by `prune` and `backup`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// SQLite file (or database URL).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "paysteps.db"
    )]
    pub db: String,
}

impl EngineArgs {
    /// The worker lease, at least one second.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// Where outgoing webhooks may be delivered.
    pub fn webhook_destinations(&self) -> crate::webhooks::Destinations {
        if self.webhook_allow_private {
            crate::webhooks::Destinations::AllowPrivate
        } else {
            crate::webhooks::Destinations::PublicOnly
        }
    }
}

/// Runs the parsed command to its end (for `dev` and `serve`, until the server stops).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    run_with(cli, Vec::new()).await
}

/// Runs a command of the `paysteps` binary with an application's own functions
/// registered beside the built-in Stripe ones (for `dev` and `serve`): a program of your
/// own becomes paysteps plus your functions, with the same commands and settings.
///
/// ```no_run
/// use clap::Parser;
/// use paysteps::{Function, Trigger};
///
/// #[tokio::main]
/// async fn main() -> anyhow::Result<()> {
///     let hello = Function::new("hello", Trigger::event("app/hello"), |ctx| async move {
///         ctx.step.run("greet", || async { Ok("hello".to_string()) }).await
///     });
///     paysteps::run_with(paysteps::Cli::parse(), vec![hello]).await
/// }
/// ```
pub async fn run_with(cli: Cli, functions: Vec<crate::engine::Function>) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => server::dev(args, functions).await,
        Command::Serve(args) => server::serve(args, functions).await,
        Command::Migrate(args) => server::migrate(&args.db).await,
        Command::Trigger(args) => trigger::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Webhooks(args) => webhooks::run(args).await,
        Command::Runs(args) => operations::runs(args).await,
        Command::Replay(args) => operations::replay(args).await,
        Command::Cancel(args) => operations::cancel(args).await,
        Command::Prune(args) => upkeep::prune(args).await,
        Command::Backup(args) => upkeep::backup(args).await,
    }
}
