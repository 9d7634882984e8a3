//! `dev`, `serve` and `migrate`: open the store, build the engine and serve HTTP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{DevArgs, EngineArgs, ServeArgs};
use crate::config::{Secret, parse_secrets};
use crate::engine::{Engine, EngineConfig, Function, Stopped};
use crate::http::{self, Access, AppState, EventKeys, Limits};
use crate::payments;
use crate::retention;
use crate::store::{Store, Write, redact_url};
use crate::stripe::{signature::Verifier, signer};
use crate::webhooks;

/// Settings key of the secret `dev` generates when none is configured.
pub const DEV_SECRET_KEY: &str = "dev_webhook_secret";

/// Open files kept for the database, the log and the rest when the open file limit
/// caps the connections.
const FILES_BESIDE_CONNECTIONS: u64 = 256;

/// The HTTP server's time limits and caps (`dev` and `serve`).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Seconds a client has to send a request's headers, from connecting or from the
    /// request's first byte; the connection is closed after that.
    #[arg(long, env = "PAYSTEPS_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body once its headers are in;
    /// after that it is answered 408 and the connection closed.
    #[arg(long, env = "PAYSTEPS_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request; 0 answers one
    /// request per connection.
    #[arg(long, env = "PAYSTEPS_KEEP_ALIVE_SECS", default_value_t = 75)]
    pub keep_alive_secs: u64,
    /// Connections open at once; the next ones are answered 503 and closed.
    #[arg(long, env = "PAYSTEPS_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Memory the request bodies being received may hold between them, in bytes; a body
    /// waits (within its timeout) for its share.
    #[arg(long, env = "PAYSTEPS_BODY_BUFFER_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub body_buffer_bytes: usize,
    /// Seconds Ctrl-C or SIGTERM waits for requests and steps in flight before closing
    /// what is left.
    #[arg(long, env = "PAYSTEPS_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

impl LimitArgs {
    /// The limits, with the connections capped below `open_files` (the open file limit
    /// in force, when known).
    pub fn limits(&self, open_files: Option<u64>) -> Limits {
        let mut max_connections = self.max_connections.max(1);
        if let Some(files) = open_files {
            let room = files.saturating_sub(FILES_BESIDE_CONNECTIONS).max(16);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if room < max_connections {
                tracing::warn!(
                    max_connections,
                    open_file_limit = files,
                    "PAYSTEPS_MAX_CONNECTIONS lowered to {room} to stay within the open file limit"
                );
                max_connections = room;
            }
        }
        Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
            keep_alive: (self.keep_alive_secs > 0)
                .then(|| Duration::from_secs(self.keep_alive_secs)),
            max_connections,
            body_buffer_bytes: self.body_buffer_bytes,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }
}

pub async fn migrate(db: &str) -> anyhow::Result<()> {
    let store = Store::connect(db).await.context("opening the database")?;
    store.migrate().await.context("applying migrations")?;
    store.close().await;
    println!("migrations applied to {}", redact_url(db));
    Ok(())
}

pub async fn dev(mut args: DevArgs, functions: Vec<Function>) -> anyhow::Result<()> {
    // Local receivers are the point of `dev`.
    args.engine.webhook_allow_private = true;
    let listener = TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let port = addr.port();
    let access = match args.dashboard_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Access::token(token),
        None if addr.ip().is_loopback() => Access::open(),
        None => bail!(
            "paysteps dev on {addr} (not a loopback address) refuses to start without PAYSTEPS_DASHBOARD_TOKEN (or --dashboard-token)"
        ),
    };
    let access = args.access.dev(access, addr);
    let store = open(&args.db).await?;
    let (secrets, generated) = match args.engine.webhook_secret.as_deref().map(parse_secrets) {
        Some(secrets) if !secrets.is_empty() => (secrets, false),
        _ => {
            let fresh = signer::generate_secret();
            let kept = store
                .write(Write::isolated(), move |tx| {
                    Box::pin(async move { tx.setting_or_insert(DEV_SECRET_KEY, &fresh).await })
                })
                .await?;
            (vec![Secret::new(kept)], true)
        }
    };
    println!("paysteps dev");
    println!("  database        {}", redact_url(&args.db));
    println!("  webhook URL     http://{addr}/api/stripe/webhook");
    println!("  dashboard/API   http://{addr}/  (JSON under http://{addr}/api/v1)");
    if generated {
        println!(
            "  webhook secret  {} (generated and kept in {}; set STRIPE_WEBHOOK_SECRET to use another)",
            secrets[0].expose(),
            redact_url(&args.db)
        );
    } else {
        println!(
            "  webhook secret  from STRIPE_WEBHOOK_SECRET ({} configured)",
            secrets.len()
        );
    }
    println!("  Stripe CLI      stripe listen --forward-to localhost:{port}/api/stripe/webhook");
    println!(
        "                  (then set STRIPE_WEBHOOK_SECRET to the whsec_… it prints and restart)"
    );
    println!("  event API       http://{addr}/e/<any key>  (INNGEST_BASE_URL=http://{addr})");
    println!(
        "  Stripe mode     {}",
        match args.engine.stripe_mode {
            Some(mode) => format!("{} events only (STRIPE_MODE)", mode.as_str()),
            None => "live and test events (set STRIPE_MODE=live or test to keep one)".into(),
        }
    );
    println!(
        "  subscriptions   {}",
        if args.engine.stripe_api().is_some() {
            "retrieved from the Stripe API (STRIPE_API_KEY): delivery order does not matter"
        } else {
            "from the events' own snapshots, ordered by their rules (set STRIPE_API_KEY to ask Stripe)"
        }
    );
    println!(
        "  entitled        {} (PAYSTEPS_ENTITLED_STATUSES)",
        args.engine.entitled_statuses.statuses().join(", ")
    );
    println!(
        "  retention       {} (PAYSTEPS_RETENTION_DAYS)",
        match args.engine.retention {
            retention::Retention::Forever => "everything kept for ever".to_owned(),
            days => format!("what ended is deleted after {days}"),
        }
    );
    if args.engine.app_urls.is_empty() {
        println!(
            "  SDK apps        none (--app-url http://127.0.0.1:3000/api/inngest runs an Inngest SDK app's functions)"
        );
    } else {
        for url in &args.engine.app_urls {
            println!(
                "  SDK app         {url} (synced every {} s)",
                crate::apps::RESYNC_EVERY.as_secs()
            );
        }
    }
    println!("  try it          paysteps trigger checkout.session.completed");
    println!("                  paysteps send app/hello --data '{{\"name\":\"Ada\"}}'");
    let engine = build_engine(store, &args.engine, functions)?;
    serve_until(
        listener,
        engine,
        &secrets,
        EventKeys::Any,
        access,
        &args.engine,
        shutdown_signal(),
    )
    .await
}

pub async fn serve(args: ServeArgs, functions: Vec<Function>) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if args.db.as_deref().is_none_or(str::is_empty) {
        missing.push("DATABASE_URL (or --db)");
    }
    let secrets = args
        .engine
        .webhook_secret
        .as_deref()
        .map(parse_secrets)
        .unwrap_or_default();
    if secrets.is_empty() {
        missing.push("STRIPE_WEBHOOK_SECRET (or --webhook-secret)");
    }
    if args.dashboard_token.as_deref().is_none_or(str::is_empty) {
        missing.push("PAYSTEPS_DASHBOARD_TOKEN (or --dashboard-token)");
    }
    if !args.engine.app_urls.is_empty() && args.engine.signing_key.is_none() {
        missing.push("PAYSTEPS_SIGNING_KEY (or --signing-key), which --app-url needs");
    }
    if !missing.is_empty() {
        bail!(
            "paysteps serve refuses to start: missing {}",
            missing.join(", ")
        );
    }
    let access = args.access.serve(
        args.dashboard_token.as_deref().unwrap_or_default(),
        &args.bind,
    )?;
    let event_keys = EventKeys::only(args.event_key.as_deref().unwrap_or_default());
    if matches!(&event_keys, EventKeys::Only(keys) if keys.is_empty()) {
        tracing::warn!("no PAYSTEPS_EVENT_KEY: the event API (POST /e/{{key}}) refuses every key");
    }
    let db = args.db.unwrap_or_default();
    let store = open(&db).await?;
    let listener = TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(addr = %listener.local_addr()?, "paysteps serve listening");
    let engine = build_engine(store, &args.engine, functions)?;
    serve_until(
        listener,
        engine,
        &secrets,
        event_keys,
        access,
        &args.engine,
        shutdown_signal(),
    )
    .await
}

async fn open(db: &str) -> anyhow::Result<Store> {
    let store = Store::connect(db)
        .await
        .with_context(|| format!("opening the database {}", redact_url(db)))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// The engine with the built-in functions, the webhook dispatcher and `functions`.
fn build_engine(
    store: Store,
    args: &EngineArgs,
    functions: Vec<Function>,
) -> anyhow::Result<Engine> {
    let config = EngineConfig {
        workers: args.workers,
        lease: args.lease(),
        ..EngineConfig::default()
    };
    let hooks = webhooks::Webhooks {
        store: store.clone(),
        clock: config.clock.clone(),
        destinations: args.webhook_destinations(),
    };
    let mut builder = Engine::builder(store).config(config);
    for function in payments::functions(args.stripe_api())
        .into_iter()
        .chain(webhooks::functions(hooks))
        .chain([retention::function(args.retention)])
        .chain(functions)
    {
        builder = builder.register(function);
    }
    Ok(builder.build()?)
}

/// The HTTP state for an engine, its webhook settings and the event API's keys.
pub fn build_app(
    engine: Engine,
    secrets: &[Secret],
    event_keys: EventKeys,
    access: Access,
    args: &EngineArgs,
) -> AppState {
    AppState {
        engine,
        verifier: Arc::new(Verifier::new(
            secrets.iter().map(Secret::expose),
            Duration::from_secs(args.tolerance_secs),
        )),
        max_body_bytes: args.max_body_bytes,
        event_keys,
        webhook_destinations: args.webhook_destinations(),
        access,
        entitlement: args.entitled_statuses.clone(),
        stripe_mode: args.stripe_mode,
        apps: None,
    }
}

/// Starts the workers and serves until `shutdown`; then stops accepting and gives the
/// requests and steps in flight the shutdown grace to finish (steps checkpoint, runs cut
/// short are handed back to the queue); whatever is left then is closed, and the runs
/// of steps stopped mid-way are released for another process or the next start.
pub async fn serve_until(
    listener: TcpListener,
    engine: Engine,
    secrets: &[Secret],
    event_keys: EventKeys,
    access: Access,
    args: &EngineArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = args.limits.limits(http::serve::raise_open_file_limit());
    let grace = limits.shutdown_grace;
    let apps = args.apps(&engine);
    if let Some(apps) = &apps {
        apps.load().await.context("reading the SDK apps")?;
    }
    engine.start();
    let mut state = build_app(engine.clone(), secrets, event_keys, access, args);
    state.apps = apps.clone();
    let stop = CancellationToken::new();
    let poller = apps.map(|apps| apps.spawn_poller(stop.child_token()));
    let signalled = stop.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        signalled.cancel();
    });
    let workers = async {
        stop.cancelled().await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: finishing requests and steps in flight"
        );
        engine.shutdown_within(grace).await
    };
    let (served, stopped) =
        tokio::join!(http::serve(listener, state, limits, stop.clone()), workers);
    watcher.abort();
    if let Some(poller) = poller {
        poller.abort();
    }
    engine.store().close().await;
    if served.cut_short > 0 || stopped != Stopped::Drained {
        tracing::warn!(connections = served.cut_short, engine = ?stopped, "stopped after the shutdown grace");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
