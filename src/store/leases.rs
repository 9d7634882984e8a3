//! Leases seen from the process that holds them: renewing those of runs in flight and
//! giving them all back when the process stops mid-step.

use super::{Result, Store};
use crate::args;
use crate::ids::RunId;
use crate::store::Write;

impl Store {
    /// Extends `owner`'s lease on each of `run_ids` still running to `expires_at`, in one
    /// transaction. A run whose lease went elsewhere, or that ended, is left as it is.
    pub(crate) async fn renew_leases(
        &self,
        owner: &str,
        run_ids: Vec<RunId>,
        expires_at: i64,
    ) -> Result<()> {
        let owner = owner.to_owned();
        self.write(Write::isolated(), move |tx| {
            Box::pin(async move {
                for run_id in &run_ids {
                    tx.execute(
                        "UPDATE runs SET lease_expires_at = $3, due_at = $3 WHERE id = $1 \
                         AND lease_owner = $2 AND status = 'running'",
                        args![run_id, &owner, expires_at],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Queues again, due at `now`, every run `owner` holds while running, and answers how
    /// many. Each resumes at its last checkpoint on its next claim.
    pub(crate) async fn release_leases(&self, owner: &str, now: i64) -> Result<u64> {
        self.execute(
            "UPDATE runs SET status = 'queued', run_at = $2, due_at = $2, updated_at = $2, \
             lease_owner = NULL, lease_expires_at = NULL \
             WHERE lease_owner = $1 AND status = 'running'"
                .to_owned(),
            args![owner.to_owned(), now],
        )
        .await
    }
}
