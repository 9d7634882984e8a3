use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A run's lifecycle: (Pending →) Queued → Running → ((Sleeping | Waiting) → Queued → Running)*
/// → Completed | Failed | Cancelled. Pending runs wait for a concurrency slot; waiting runs
/// for an event or an invoked run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a concurrency slot before it can be queued.
    Pending,
    /// Due now or at a set time (a retry, a throttled start), waiting for a worker.
    Queued,
    /// Claimed by a worker, which holds its lease.
    Running,
    /// Parked by [`Step::sleep`](crate::engine::Step::sleep) until a set time.
    Sleeping,
    /// Parked until an event arrives ([`Step::wait_for_event`](crate::engine::Step::wait_for_event))
    /// or an invoked run ends.
    Waiting,
    /// Ended with an output.
    Completed,
    /// Ended with an error: a step's retries ran out, its error was non-retriable, or the
    /// handler gave up ([`Interrupt::fail`](crate::engine::Interrupt::fail)).
    Failed,
    /// Stopped by an operator or by a `cancel_on` event.
    Cancelled,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Pending,
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Sleeping,
        RunStatus::Waiting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The status as stored and as the API spells it, in lowercase (`queued`, `failed`…).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Sleeping => "sleeping",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run has ended (completed, failed or cancelled) and will never change
    /// status again; a replay is a new run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is none of [`RunStatus`]'s; holds the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown run status '{0}' (expected one of queued, running, sleeping, completed, failed, cancelled)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_text() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
        }
        assert!("Completed".parse::<RunStatus>().is_ok());
        assert!("done".parse::<RunStatus>().is_err());
    }
}
