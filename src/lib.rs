//! paysteps turns Stripe webhooks into durable, replayable step functions.
//!
//! A function is plain Rust registered on an [`Engine`]: it names the event that
//! [`Trigger`]s it, and its body is a sequence of [`Step`]s, each run once and
//! checkpointed, retried with [`Backoff`] when it fails, parked when it sleeps or waits
//! ([`WaitFor`]). Events come in through the Stripe webhook, the event API or
//! [`Engine::ingest`] ([`EventInput`]); each starts one run per function it triggers, and
//! a run ends with a [`RunStatus`]. The [`Store`] holds it all, on SQLite or PostgreSQL; a
//! `run_tx` step writes its business rows through a [`StoreTx`] in the transaction that
//! records the step as done.
//!
//! An embedding program is paysteps plus its own functions: the same commands (`dev`,
//! `serve`, …) and settings, with its functions registered beside the built-in Stripe ones
//! ([`run_with`]). `cargo run -- dev` then serves the webhook, the event API and the
//! dashboard on `localhost:8288`:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use clap::Parser;
//! use paysteps::{Cli, Function, Trigger, args};
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let welcome = Function::new("welcome", Trigger::event("app/user.created"), |ctx| async move {
//!         let user = ctx.event.data["user"].as_str().unwrap_or_default().to_owned();
//!         // Written in the same transaction that records the step as done.
//!         ctx.step
//!             .run_tx("record", move |tx| {
//!                 Box::pin(async move {
//!                     tx.execute("INSERT INTO welcomed (user_id) VALUES ($1)", args![user]).await?;
//!                     Ok(())
//!                 })
//!             })
//!             .await?;
//!         ctx.step.sleep("wait a day", Duration::from_secs(86_400)).await?;
//!         ctx.step.run("send", || async { Ok("sent".to_owned()) }).await
//!     });
//!     paysteps::init_logging()?;
//!     paysteps::run_with(Cli::parse(), vec![welcome]).await
//! }
//! ```
//!
//! A program that serves its own HTTP builds the engine itself: [`Engine::builder`] on a
//! [`Store`], [`EngineBuilder::register`] each function (the built-in ones are
//! [`stripe_functions`]), [`Engine::start`], and [`Engine::ingest`] for each event.
//!
//! The main types: [`Engine`] and [`EngineBuilder`], [`Function`] and [`Trigger`],
//! [`Ctx`] and [`Step`] inside a function, [`StepError`] and [`NonRetriable`] for what
//! fails, [`Store`] and [`StoreTx`] for the database. [`Engine::replay`] and
//! [`Engine::cancel`] (or `…_matching` a [`Selection`]) are the operator's actions on runs;
//! the [`cli`] module holds the commands and their arguments.

#![warn(missing_docs)]

pub(crate) mod apps;
pub mod cli;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod http;
pub(crate) mod ids;
pub(crate) mod metrics;
pub(crate) mod payments;
pub(crate) mod retention;
pub(crate) mod state;
pub(crate) mod store;
pub(crate) mod stripe;
#[doc(hidden)]
pub mod testing;
pub(crate) mod webhooks;

pub use cli::{Cli, Command, init_logging, run, run_with};
pub use engine::operations::{BulkOutcome, OperationError, ReplayMode, Selection};
pub use engine::{
    Backoff, CRON_TICK, CancelOn, Clock, Concurrency, Ctx, DEFAULT_RETRIES, Engine, EngineBuilder,
    EngineConfig, EngineError, Event, EventInput, Failure, Function, FunctionInfo, Interrupt,
    NonRetriable, RunStatus, Schedule, ScheduleError, Step, StepError, Stopped, Throttle, Trigger,
    WaitFor,
};
pub use ids::{EventId, FunctionId, IdError, RunId};
pub use payments::functions as stripe_functions;
pub use state::UnknownStatus;
pub use store::{
    Arg, ArgType, Dialect, Error as StoreError, IngestOutcome, Record, Result as StoreResult,
    RunRow, Store, StoreTx,
};
pub use stripe::api::{ApiError as StripeApiError, StripeApi};
