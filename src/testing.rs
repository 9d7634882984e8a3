//! What the integration tests and the benchmark reach beyond the public API: the HTTP
//! router and its state, Stripe fixtures and signing, the store's rows and engine-facing
//! writes, the payment and webhook repositories. Not part of the public API; it may change
//! in any release.

/// The command line's pieces (`serve_until`, the argument structs).
pub mod cli {
    pub use crate::cli::*;
}
/// Configuration values such as [`Secret`](crate::testing::config::Secret).
pub mod config {
    pub use crate::config::*;
}
/// The engine's internals: ids, operations, paths.
pub mod engine {
    pub use crate::engine::*;
}
/// The HTTP router, its state and access control.
pub mod http {
    pub use crate::http::*;
}
/// The Prometheus metrics.
pub mod metrics {
    pub use crate::metrics::*;
}
/// The payment functions' repositories, reports and rules.
pub mod payments {
    pub use crate::payments::*;
}
/// Journal retention.
pub mod retention {
    pub use crate::retention::*;
}
/// Run, step and listener states.
pub mod state {
    pub use crate::state::*;
}
/// The store's rows, journal types and engine-facing writes.
pub mod store {
    pub use crate::store::*;
}
/// Stripe fixtures, signing, signature checking and objects.
pub mod stripe {
    pub use crate::stripe::*;
}
/// Outgoing webhooks: destinations, endpoints, secrets.
pub mod webhooks {
    pub use crate::webhooks::*;
}

use std::future::Future;

use futures::future::BoxFuture;

use crate::state::RunStatus;
use crate::store::{
    Answer, ClaimedRun, Durability, Error, Generation, IngestOutcome, NewEvent, NewLease, NewRun,
    Pruned, Result, RunFilter, RunRow, StepRow, StepUpdate, Store, StoreTx, Write,
};

/// The engine-facing methods of [`Store`] the tests call; each is the crate's own method of
/// the same name.
pub trait StoreInternals {
    /// [`Store`]'s `write`: `work` in one write transaction, as `write` says.
    fn write<A, T, E, F>(
        &self,
        write: Write<A, E>,
        work: F,
    ) -> impl Future<Output = std::result::Result<A::Answered<T>, E>> + Send
    where
        A: Answer,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: for<'c> FnOnce(&'c mut StoreTx) -> BoxFuture<'c, std::result::Result<T, E>>
            + Send
            + 'static;
    /// The run with this id, if any.
    fn run(&self, run_id: &str) -> impl Future<Output = Result<Option<RunRow>>> + Send;
    /// Runs matching `filter`, newest first.
    fn runs(&self, filter: &RunFilter) -> impl Future<Output = Result<Vec<RunRow>>> + Send;
    /// A run's steps, in the order they first ran.
    fn steps(&self, run_id: &str) -> impl Future<Output = Result<Vec<StepRow>>> + Send;
    /// The replays of a run.
    fn replays_of(&self, run_id: &str) -> impl Future<Output = Result<Vec<RunRow>>> + Send;
    /// The earliest time a queued or sleeping run, or a lease, falls due.
    fn next_due(&self) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// How many write transactions wait for SQLite's writer.
    fn queued_writes(&self) -> usize;
    /// Claims up to `limit` due runs for `owner`.
    fn claim_runs(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ClaimedRun>>> + Send;
    /// Saves a step, answered before its commit.
    fn save_step_early(
        &self,
        run_id: &str,
        owner: &str,
        step: &StepUpdate,
        after: Option<Generation>,
    ) -> impl Future<Output = Result<(bool, Option<Durability>)>> + Send;
    /// Ends a run held by `owner` with `status`, committed alone.
    fn finish_run(
        &self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Stores an event and its runs in a transaction of their own.
    fn store_event_alone(
        &self,
        event: &NewEvent,
        runs: &[NewRun],
        lease: Option<&NewLease>,
    ) -> impl Future<Output = Result<Option<IngestOutcome>>> + Send;
}

impl StoreInternals for Store {
    fn write<A, T, E, F>(
        &self,
        write: Write<A, E>,
        work: F,
    ) -> impl Future<Output = std::result::Result<A::Answered<T>, E>> + Send
    where
        A: Answer,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: for<'c> FnOnce(&'c mut StoreTx) -> BoxFuture<'c, std::result::Result<T, E>>
            + Send
            + 'static,
    {
        Store::write(self, write, work)
    }
    fn run(&self, run_id: &str) -> impl Future<Output = Result<Option<RunRow>>> + Send {
        Store::run(self, run_id)
    }
    fn runs(&self, filter: &RunFilter) -> impl Future<Output = Result<Vec<RunRow>>> + Send {
        Store::runs(self, filter)
    }
    fn steps(&self, run_id: &str) -> impl Future<Output = Result<Vec<StepRow>>> + Send {
        Store::steps(self, run_id)
    }
    fn replays_of(&self, run_id: &str) -> impl Future<Output = Result<Vec<RunRow>>> + Send {
        Store::replays_of(self, run_id)
    }
    fn next_due(&self) -> impl Future<Output = Result<Option<i64>>> + Send {
        Store::next_due(self)
    }
    fn queued_writes(&self) -> usize {
        Store::queued_writes(self)
    }
    fn claim_runs(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ClaimedRun>>> + Send {
        Store::claim_runs(self, owner, now, lease_ms, limit)
    }
    fn save_step_early(
        &self,
        run_id: &str,
        owner: &str,
        step: &StepUpdate,
        after: Option<Generation>,
    ) -> impl Future<Output = Result<(bool, Option<Durability>)>> + Send {
        Store::save_step_early(self, run_id, owner, step, after)
    }
    fn finish_run(
        &self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send {
        Store::finish_run(self, run_id, owner, status, output, error, now)
    }
    fn store_event_alone(
        &self,
        event: &NewEvent,
        runs: &[NewRun],
        lease: Option<&NewLease>,
    ) -> impl Future<Output = Result<Option<IngestOutcome>>> + Send {
        Store::store_event_alone(self, event, runs, lease)
    }
}

/// The engine-facing methods of [`StoreTx`] the tests call; each is the crate's own method
/// of the same name.
pub trait StoreTxInternals {
    /// Ends a run held by `owner` with `status`.
    fn finish_run(
        &mut self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Inserts an event and its runs, or finds it a duplicate.
    fn insert_event(
        &mut self,
        event: &NewEvent,
        runs: &[NewRun],
    ) -> impl Future<Output = Result<IngestOutcome>> + Send;
    /// Inserts one run of a stored event.
    fn insert_run(
        &mut self,
        event_id: &str,
        run: &NewRun,
        now: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes one batch of the journal older than `cutoff`.
    fn prune_batch(
        &mut self,
        cutoff: Option<i64>,
        now: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Pruned>> + Send;
    /// Sets a stored setting.
    fn set_setting(&mut self, key: &str, value: &str) -> impl Future<Output = Result<()>> + Send;
}

impl StoreTxInternals for StoreTx {
    fn finish_run(
        &mut self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send {
        StoreTx::finish_run(self, run_id, owner, status, output, error, now)
    }
    fn insert_event(
        &mut self,
        event: &NewEvent,
        runs: &[NewRun],
    ) -> impl Future<Output = Result<IngestOutcome>> + Send {
        StoreTx::insert_event(self, event, runs)
    }
    fn insert_run(
        &mut self,
        event_id: &str,
        run: &NewRun,
        now: i64,
    ) -> impl Future<Output = Result<()>> + Send {
        StoreTx::insert_run(self, event_id, run, now)
    }
    fn prune_batch(
        &mut self,
        cutoff: Option<i64>,
        now: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Pruned>> + Send {
        StoreTx::prune_batch(self, cutoff, now, limit)
    }
    fn set_setting(&mut self, key: &str, value: &str) -> impl Future<Output = Result<()>> + Send {
        StoreTx::set_setting(self, key, value)
    }
}
