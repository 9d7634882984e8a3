//! A shutdown with a deadline: what [`Engine::shutdown`] does, for at most a grace
//! period, after which the executions left are stopped where they are and their runs
//! handed back to the queue.

use std::time::Duration;

use super::{Engine, worker};

/// How a bounded shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every step in flight finished and checkpointed within the grace period.
    Drained,
    /// The grace period ran out: the executions left were stopped mid-step and this
    /// many runs were handed back to the queue, each to resume at its last checkpoint.
    CutShort {
        /// Runs whose lease was released.
        released: u64,
    },
}

impl Engine {
    /// [`Engine::shutdown`] for at most `grace`. Steps still running then are stopped
    /// without their checkpoint, so they run again when their run is next claimed (a
    /// transactional step's writes, uncommitted, are rolled back); the runs this engine
    /// holds are released at once, for another process or the next start to claim
    /// without waiting for their leases to lapse.
    pub async fn shutdown_within(&self, grace: Duration) -> Stopped {
        let tasks = self.stop_tasks();
        let aborts: Vec<_> = tasks.iter().map(|task| task.abort_handle()).collect();
        let mut all = std::pin::pin!(futures::future::join_all(tasks));
        if tokio::time::timeout(grace, all.as_mut()).await.is_ok() {
            return Stopped::Drained;
        }
        // The dispatch loop holds the executions it waits for: stopping it drops them.
        for task in &aborts {
            task.abort();
        }
        worker::executions(&self.inner).abort_all();
        all.await;
        let now = self.inner.config.clock.now_ms();
        // Every write of a stopped execution is made under its lease: one still on its way
        // to the database lands before this, or finds the lease gone and changes nothing.
        let released = self
            .inner
            .store
            .release_leases(&self.inner.owner, now)
            .await;
        match released {
            Ok(released) => {
                tracing::warn!(
                    runs = released,
                    "steps still running after the shutdown grace were stopped; their runs are queued again"
                );
                Stopped::CutShort { released }
            }
            Err(err) => {
                tracing::warn!(error = %err, "releasing the runs of stopped steps failed; they resume when their leases expire");
                Stopped::CutShort { released: 0 }
            }
        }
    }
}
