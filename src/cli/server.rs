//! `dev`, `serve` and `migrate`: open the store, build the engine and serve HTTP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use super::{DevArgs, EngineArgs, ServeArgs};
use crate::config::{Secret, parse_secrets};
use crate::engine::{Engine, EngineConfig, Function};
use crate::http::{self, Access, AppState, EventKeys};
use crate::payments::{self, Faults};
use crate::store::{Store, redact_url};
use crate::stripe::{signature::Verifier, signer};
use crate::webhooks;

/// Settings key of the secret `dev` generates when none is configured.
pub const DEV_SECRET_KEY: &str = "dev_webhook_secret";

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
                .write(move |tx| {
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
    for function in payments::functions(Faults::default(), args.stripe_api())
        .into_iter()
        .chain(webhooks::functions(hooks))
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
    }
}

/// Starts the workers, serves until `shutdown`, then stops the workers gracefully:
/// in-flight steps finish and checkpoint, cut-short runs are handed back to the queue.
pub async fn serve_until(
    listener: TcpListener,
    engine: Engine,
    secrets: &[Secret],
    event_keys: EventKeys,
    access: Access,
    args: &EngineArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    engine.start();
    let state = build_app(engine.clone(), secrets, event_keys, access, args);
    let served = http::serve(listener, state, shutdown).await;
    tracing::info!("shutting down: finishing in-flight steps");
    engine.shutdown().await;
    engine.store().close().await;
    served.context("serving HTTP")
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
