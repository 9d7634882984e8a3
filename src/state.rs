//! The states runs, steps and listeners are stored in, as enums. Each spells itself in
//! the database and in JSON as the same lowercase text (`as_str`), and parses back
//! from it, so stored values and API output read as they always have.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a state enum stored as lowercase text: `ALL`, `as_str`, `Display`,
/// `FromStr` (case-insensitive) and `TryFrom<&str>`, all from one variant ↔ text table.
macro_rules! stored_text {
    ($ty:ident, $err:ident, [$($variant:ident => $text:literal),+ $(,)?]) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The text stored in the database and written in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = $err;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| $err(s.to_owned()))
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = $err;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    };
}

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

stored_text!(RunStatus, UnknownStatus, [
    Pending => "pending",
    Queued => "queued",
    Running => "running",
    Sleeping => "sleeping",
    Waiting => "waiting",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
]);

impl RunStatus {
    /// Whether the run has ended (completed, failed or cancelled) and will never change
    /// status again; a replay is a new run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// A status name that is none of [`RunStatus`]'s; holds the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown run status '{0}' (expected one of queued, running, sleeping, completed, failed, cancelled)"
)]
pub struct UnknownStatus(pub String);

/// A step's state: Errored → (retry) … → Completed | Failed; Sleeping and Waiting park
/// the run until the step's `wake_at` or an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Ran and checkpointed its output; never runs again in this run.
    Completed,
    /// An attempt failed; a retry is due at the step's `wake_at`.
    Errored,
    /// Failed for good: retries ran out or the error was non-retriable.
    Failed,
    /// A sleep not yet over.
    Sleeping,
    /// Waiting for an event or for an invoked run to end.
    Waiting,
}

stored_text!(StepStatus, UnknownStepStatus, [
    Completed => "completed",
    Errored => "errored",
    Failed => "failed",
    Sleeping => "sleeping",
    Waiting => "waiting",
]);

/// A step status name that is none of [`StepStatus`]'s; holds the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown step status '{0}'")]
pub struct UnknownStepStatus(pub String);

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Runs a closure and checkpoints its output ([`Step::run`](crate::engine::Step::run)).
    Run,
    /// Parks the run until a time ([`Step::sleep`](crate::engine::Step::sleep)).
    Sleep,
    /// Parks the run until an event arrives.
    Wait,
    /// Starts another function's run and waits for it to end.
    Invoke,
}

stored_text!(StepKind, UnknownStepKind, [
    Run => "run",
    Sleep => "sleep",
    Wait => "wait",
    Invoke => "invoke",
]);

/// A step kind name that is none of [`StepKind`]'s; holds the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown step kind '{0}'")]
pub struct UnknownStepKind(pub String);

/// What a stored listener does when its event arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Completes the run's waiting step with the event.
    Wait,
    /// Cancels the run (a function's `cancel_on`).
    Cancel,
}

stored_text!(ListenerKind, UnknownListenerKind, [
    Wait => "wait",
    Cancel => "cancel",
]);

/// A listener kind name that is none of [`ListenerKind`]'s; holds the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown listener kind '{0}'")]
pub struct UnknownListenerKind(pub String);

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::*;

    /// Every variant goes to its text and back, through `FromStr`, `TryFrom` and serde.
    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + Debug + fmt::Display + FromStr + Serialize + DeserializeOwned,
        T: for<'a> TryFrom<&'a str>,
        <T as FromStr>::Err: Debug,
    {
        for &v in all {
            let text = v.to_string();
            assert_eq!(text, text.to_lowercase(), "{v:?} is stored in lowercase");
            assert_eq!(text.parse::<T>().ok(), Some(v));
            assert_eq!(T::try_from(text.as_str()).ok(), Some(v));
            assert_eq!(text.to_uppercase().parse::<T>().ok(), Some(v));
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
        }
        assert!("no such state".parse::<T>().is_err());
    }

    #[test]
    fn every_state_round_trips_through_its_stored_text() {
        round_trips(RunStatus::ALL);
        round_trips(StepStatus::ALL);
        round_trips(StepKind::ALL);
        round_trips(ListenerKind::ALL);
        assert_eq!(RunStatus::ALL.len(), 8);
        assert_eq!(RunStatus::Cancelled.as_str(), "cancelled");
        assert_eq!(StepStatus::Errored.as_str(), "errored");
        assert_eq!(StepKind::Invoke.as_str(), "invoke");
        assert_eq!(ListenerKind::Cancel.as_str(), "cancel");
    }

    #[test]
    fn only_ended_runs_are_final() {
        let finals: Vec<_> = RunStatus::ALL.iter().filter(|s| s.is_final()).collect();
        assert_eq!(
            finals,
            [
                &RunStatus::Completed,
                &RunStatus::Failed,
                &RunStatus::Cancelled
            ]
        );
    }
}
