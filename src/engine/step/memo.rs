//! Finding a step among the run's stored steps: its key (name plus occurrence), and
//! either its memoized output or the attempt about to execute.

use serde::de::DeserializeOwned;

use super::{Interrupt, Step};
use crate::state::{StepKind, StepStatus};
use crate::store::{StepRow, StepUpdate};

/// A step about to execute: its key and place in the run.
#[derive(Clone)]
pub(in crate::engine) struct Planned {
    pub key: String,
    pub name: String,
    pub position: i64,
    pub attempts: i64,
    pub started_at: i64,
}

impl Planned {
    pub(in crate::engine) fn update(
        &self,
        status: StepStatus,
        output: Option<String>,
        error: Option<String>,
        ended_at: i64,
    ) -> StepUpdate {
        StepUpdate {
            key: self.key.clone(),
            name: self.name.clone(),
            position: self.position,
            kind: StepKind::Run,
            status,
            attempts: self.attempts,
            output,
            error,
            wake_at: None,
            started_at: self.started_at,
            ended_at: Some(ended_at),
        }
    }
}

pub(super) enum Lookup<T> {
    /// The step completed in an earlier execution: its stored output.
    Done(T),
    Execute(Planned),
}

impl Step {
    /// The next step named `name`: done already, or to execute now (unless the run
    /// stops at this boundary).
    pub(super) fn lookup<T: DeserializeOwned>(&self, name: &str) -> Result<Lookup<T>, Interrupt> {
        let key = self.next_key(name);
        let existing = self.memo(&key);
        if let Some(row) = existing.filter(|row| row.status == StepStatus::Completed) {
            let output = row.output.as_deref().unwrap_or("null");
            return serde_json::from_str(output).map(Lookup::Done).map_err(|e| {
                Interrupt::fail(format!(
                    "stored output of step '{name}' no longer decodes: {e}"
                ))
            });
        }
        self.check_boundary()?;
        let position = existing.map_or_else(|| self.take_position(), |row| row.position);
        Ok(Lookup::Execute(Planned {
            key,
            name: name.to_owned(),
            position,
            attempts: existing.map_or(0, |row| row.attempts) + 1,
            started_at: self.now(),
        }))
    }

    /// The next attempt of a step already recorded.
    pub(in crate::engine) fn planned_from(&self, row: &StepRow) -> Planned {
        Planned {
            key: row.step_key.clone(),
            name: row.name.clone(),
            position: row.position,
            attempts: row.attempts,
            started_at: row.started_at,
        }
    }

    /// The step stored under `key` by an earlier execution of the run.
    pub(in crate::engine) fn memo(&self, key: &str) -> Option<&StepRow> {
        self.inner.memo.get(key)
    }

    /// The key of the next step named `name`: `name:0`, then `name:1`, … so that a step
    /// repeated in a loop is a step of its own each time.
    pub(in crate::engine) fn next_key(&self, name: &str) -> String {
        let mut progress = self.progress();
        let n = progress.occurrences.entry(name.to_owned()).or_insert(0);
        let key = format!("{name}:{n}");
        *n += 1;
        key
    }

    pub(in crate::engine) fn take_position(&self) -> i64 {
        let mut progress = self.progress();
        let position = progress.next_position;
        progress.next_position += 1;
        position
    }
}
