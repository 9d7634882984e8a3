//! The `steps` table: a run's checkpoints.

use super::StepUpdate;
use crate::args;
use crate::ids::RunId;
use crate::store::params::{Columns, Params};
use crate::store::postgres::{Made, StepCheckpoint};
use crate::store::rows::StepRow;
use crate::store::{Arg, Backend, Durability, Generation, Result, Store, StoreTx, Write};

/// The columns of `steps`, in the order [`step_row`] lists them.
pub(in crate::store) const STEP_COLUMNS: &str = "run_id, step_key, name, position, kind, \
     status, attempts, output, error, wake_at, started_at, ended_at";
pub(in crate::store) const STEP_UPSERT: &str = "ON CONFLICT (run_id, step_key) DO UPDATE SET \
     status = excluded.status, attempts = excluded.attempts, output = excluded.output, \
     error = excluded.error, wake_at = excluded.wake_at, ended_at = excluded.ended_at";

impl StoreTx {
    /// Writes a step checkpoint, replacing the step's previous row.
    pub(crate) async fn save_step(&mut self, run_id: &RunId, step: &StepUpdate) -> Result<()> {
        let mut params = Params::default();
        let row = step_row(&mut params, run_id, step);
        let sql = format!(
            "INSERT INTO steps ({}) VALUES ({}) {STEP_UPSERT}",
            row.names(),
            row.values()
        );
        self.execute(&sql, params.into_args()).await?;
        Ok(())
    }

    /// Saves a step checkpoint provided `owner` still holds the run's lease, in one
    /// statement; false (and nothing written) once the run was taken over, cancelled or
    /// finished elsewhere.
    pub(crate) async fn save_step_if_leased(
        &mut self,
        run_id: &RunId,
        owner: &str,
        step: &StepUpdate,
    ) -> Result<bool> {
        let (sql, args) = leased_step(run_id, owner, step);
        Ok(self.execute(&sql, args).await? == 1)
    }
}

impl Store {
    /// [`StoreTx::save_step_if_leased`], committed alone and answered before its commit is
    /// durable. Same effect as `write(Write::isolated().answer_early().after(after), …)`
    /// running [`StoreTx::save_step_if_leased`]. On PostgreSQL it is made, with
    /// no `BEGIN` or `COMMIT`, by one statement with the other runs' checkpoints waiting,
    /// and answered once committed.
    #[doc(hidden)]
    pub async fn save_step_early(
        &self,
        run_id: &RunId,
        owner: &str,
        step: &StepUpdate,
        after: Option<Generation>,
    ) -> Result<(bool, Option<Durability>)> {
        if let Backend::Postgres(pg) = &self.0 {
            let write = StepCheckpoint {
                run_id: run_id.clone(),
                owner: owner.to_owned(),
                step: step.clone(),
            };
            let saved = match pg.save_step(write).await? {
                Made::Yes => true,
                Made::No => false,
                Made::Alone => {
                    let (sql, args) = leased_step(run_id, owner, step);
                    self.execute(sql, args).await? == 1
                }
            };
            return Ok((saved, None));
        }
        let (sql, args) = leased_step(run_id, owner, step);
        let early = Write::isolated().answer_early().after(after);
        let (changed, durability) = self
            .write(early, move |tx| {
                Box::pin(async move { tx.execute(&sql, args).await })
            })
            .await?;
        Ok((changed == 1, durability))
    }

    /// A run's steps, in the order they first ran.
    #[doc(hidden)]
    pub async fn steps(&self, run_id: &RunId) -> Result<Vec<StepRow>> {
        self.fetch_all(
            &format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = $1 ORDER BY position"),
            args![run_id],
        )
        .await
    }
}

/// A step's row: its columns, each with its value bound in `params`.
fn step_row(params: &mut Params, run_id: &RunId, step: &StepUpdate) -> Columns {
    Columns::default()
        .bind(params, "run_id", run_id)
        .bind(params, "step_key", &step.key)
        .bind(params, "name", &step.name)
        .bind(params, "position", step.position)
        .bind(params, "kind", step.kind.as_str())
        .bind(params, "status", step.status.as_str())
        .bind(params, "attempts", step.attempts)
        .bind(params, "output", step.output.clone())
        .bind(params, "error", step.error.clone())
        .bind(params, "wake_at", step.wake_at)
        .bind(params, "started_at", step.started_at)
        .bind(params, "ended_at", step.ended_at)
}

/// Writes a step checkpoint provided `owner` holds the run's lease: the statement and
/// its arguments.
fn leased_step(run_id: &RunId, owner: &str, step: &StepUpdate) -> (String, Vec<Arg>) {
    let mut params = Params::default();
    let row = step_row(&mut params, run_id, step);
    let owner = params.bind(owner);
    let sql = format!(
        "INSERT INTO steps ({}) SELECT {} WHERE EXISTS \
         (SELECT 1 FROM runs WHERE id = {} AND lease_owner = {owner} \
         AND status = 'running') {STEP_UPSERT}",
        row.names(),
        row.values(),
        row.get("run_id"),
    );
    (sql, params.into_args())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{StepKind, StepStatus};
    use crate::store::params::assert_matches_args;

    fn step() -> StepUpdate {
        StepUpdate {
            key: "charge:0".into(),
            name: "charge".into(),
            position: 0,
            kind: StepKind::Run,
            status: StepStatus::Completed,
            attempts: 1,
            output: Some("1".into()),
            error: None,
            wake_at: None,
            started_at: 1,
            ended_at: Some(2),
        }
    }

    #[test]
    fn a_step_row_lists_the_step_columns() {
        let mut params = Params::default();
        let row = step_row(&mut params, &"run_1".parse().unwrap(), &step());
        assert_eq!(row.names(), STEP_COLUMNS);
        let sql = format!("VALUES ({})", row.values());
        assert_matches_args(&sql, &params.into_args());
    }

    #[test]
    fn a_leased_checkpoint_reads_exactly_its_arguments() {
        let (sql, args) = leased_step(&"run_1".parse().unwrap(), "wrk_1", &step());
        assert_matches_args(&sql, &args);
    }
}
