//! Recording a step as done, and when that record is durable.

use super::{Halt, Interrupt, Step};
use crate::store::{Durability, Generation, StepUpdate};

impl Step {
    /// Records a step as done, provided the run's lease is still ours. The answer may
    /// come before the commit is durable (see [`Step::settle`]).
    pub(in crate::engine) async fn checkpoint(&self, update: StepUpdate) -> Result<(), Interrupt> {
        let (run_id, owner, _) = self.lease_args();
        let after = self.progress().last_early;
        let saved = self
            .settings()
            .store
            .save_step_early(&run_id, &owner, &update, after)
            .await;
        match saved {
            Ok((true, durability)) => {
                self.unsettled(durability);
                Ok(())
            }
            Ok((false, _)) => Err(self.halt(Halt::Lost)),
            Err(err) => Err(self.halt(Halt::Store(err.to_string()))),
        }
    }

    /// Makes the execution build on a commit that may not be durable yet (the one that
    /// stored its run): its writes run only if that commit succeeds, and what leaves the
    /// database waits for it like for the execution's own checkpoints.
    pub(in crate::engine) fn builds_on(&self, commit: Durability) {
        self.unsettled(Some(commit));
    }

    pub(super) fn unsettled(&self, durability: Option<Durability>) {
        if let Some(durability) = durability {
            let mut progress = self.progress();
            progress.last_early = Some(durability.generation());
            progress.unsettled.push(durability);
        }
    }

    /// The commit generation of the execution's latest early write, which a write made
    /// after it builds on.
    pub(in crate::engine) fn last_early(&self) -> Option<Generation> {
        self.progress().last_early
    }

    /// Waits until every checkpoint of this execution is durable.
    ///
    /// Checkpoints and `run_tx` writes are answered once they ran, before their commit
    /// reaches the disk, so that a run's next write can join the same commit. What
    /// leaves the database waits here first: a `run` step's work, and the worker's
    /// ending of the run. A crash loses at most a tail of a run's checkpoints, never one
    /// that anything outside the database has seen the effects of; and a write that
    /// builds on a commit that failed does not run.
    pub(crate) async fn settle(&self) -> crate::store::Result<()> {
        let unsettled = std::mem::take(&mut self.progress().unsettled);
        for durability in unsettled {
            durability.wait().await?;
        }
        Ok(())
    }

    pub(crate) async fn settle_or_halt(&self) -> Result<(), Interrupt> {
        self.settle()
            .await
            .map_err(|err| self.halt(Halt::Store(err.to_string())))
    }
}
