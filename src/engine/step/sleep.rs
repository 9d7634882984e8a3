//! Sleeps: a step that parks the run until a time and completes once it has passed.

use std::time::Duration;

use super::{Halt, Interrupt, Step};
use crate::engine::clock::duration_ms;
use crate::state::{StepKind, StepStatus};
use crate::store::StepUpdate;

enum Wake {
    After(Duration),
    At(i64),
}

impl Step {
    /// Parks the run for `duration`; the worker is freed meanwhile.
    pub async fn sleep(&self, name: &str, duration: Duration) -> Result<(), Interrupt> {
        self.sleep_inner(name, Wake::After(duration)).await
    }

    /// Parks the run until `until_ms` (milliseconds since the Unix epoch).
    pub async fn sleep_until(&self, name: &str, until_ms: i64) -> Result<(), Interrupt> {
        self.sleep_inner(name, Wake::At(until_ms)).await
    }

    /// Parks the run until `until_ms`, for a sleep an app asked for under its own `key`.
    pub(crate) async fn sleep_keyed(
        &self,
        key: &str,
        name: &str,
        until_ms: i64,
    ) -> Result<(), Interrupt> {
        self.sleep_at_key(key.to_owned(), name, Wake::At(until_ms))
            .await
    }

    async fn sleep_inner(&self, name: &str, wake: Wake) -> Result<(), Interrupt> {
        let key = self.next_key(name);
        self.sleep_at_key(key, name, wake).await
    }

    async fn sleep_at_key(&self, key: String, name: &str, wake: Wake) -> Result<(), Interrupt> {
        let now = self.now();
        let existing = self.memo(&key);
        if existing.is_some_and(|row| row.status == StepStatus::Completed) {
            return Ok(());
        }
        self.check_boundary()?;
        let (position, started_at, wake_at) = match existing {
            Some(row) => (row.position, row.started_at, row.wake_at.unwrap_or(now)),
            None => {
                let wake_at = match wake {
                    Wake::After(d) => now.saturating_add(duration_ms(d)),
                    Wake::At(at) => at,
                };
                (self.take_position(), now, wake_at)
            }
        };
        let mut update = StepUpdate {
            key,
            name: name.to_owned(),
            position,
            kind: StepKind::Sleep,
            status: StepStatus::Sleeping,
            attempts: 1,
            output: None,
            error: None,
            wake_at: Some(wake_at),
            started_at,
            ended_at: None,
        };
        if wake_at > now {
            return Err(self.halt(Halt::Sleep {
                step: update,
                until: wake_at,
            }));
        }
        update.status = StepStatus::Completed;
        update.ended_at = Some(now);
        self.checkpoint(update).await
    }
}
