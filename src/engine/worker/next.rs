//! The pure half of ending an execution: from where the step tools halted the run and
//! what its handler returned, which outcome to record. No I/O here; [`super::apply`]
//! writes what was decided.

use std::any::Any;

use serde_json::Value;

use super::super::intake::Intake;
use super::super::step::{Halt, Interrupt, Reason};
use crate::store::{NewListener, StepUpdate};

/// What the handler's future ended with: its output, an interrupt, or a panic's payload.
pub(super) type HandlerResult = Result<Result<Value, Interrupt>, Box<dyn Any + Send>>;

/// The next state of a run whose execution stopped, with what recording it needs.
#[derive(Debug)]
pub(super) enum Next {
    /// The handler returned: the run completes with this output.
    Complete { output: Value },
    /// A step's attempt failed with retries left: the run is queued again for `at`.
    Retry {
        step: StepUpdate,
        at: i64,
        error: Option<String>,
    },
    /// A step sleeps: the run parks as sleeping until `until`.
    Sleep { step: StepUpdate, until: i64 },
    /// A step waits for an event or an invoked run: the run parks as waiting until
    /// `until`, its listener and the invoked run's intake stored with it.
    Wait {
        step: StepUpdate,
        until: i64,
        listener: Option<Box<NewListener>>,
        intake: Option<Box<Intake>>,
    },
    /// The run fails for good: a step's retries ran out or its error was non-retriable
    /// (`step` is then that step), or the handler gave up or panicked.
    Fail {
        step: Option<StepUpdate>,
        error: String,
    },
    /// The worker is shutting down: the run is queued again, due at once.
    Release,
    /// The run is no longer this worker's (its lease lapsed, or it was cancelled or
    /// ended elsewhere): nothing is recorded.
    Lost,
    /// A checkpoint could not be written: the run is queued again for `at`, one backoff
    /// base from now, and resumes at its last stored checkpoint.
    StoreFailed { error: String, at: i64 },
}

/// How an execution ended, as counted by the `runs` metric. Besides the run statuses it
/// stopped in, `retrying`, `released` and `lost` tell why a run went back to the queue
/// or was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Completed,
    Failed,
    Retrying,
    Sleeping,
    Waiting,
    Released,
    Lost,
}

impl Outcome {
    /// The label the metric is counted under.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Retrying => "retrying",
            Outcome::Sleeping => "sleeping",
            Outcome::Waiting => "waiting",
            Outcome::Released => "released",
            Outcome::Lost => "lost",
        }
    }
}

/// Decides the run's next state. A halt recorded by the step tools wins over what the
/// handler returned (the handler only sees the interrupt that carried it); without one,
/// the handler's output completes the run and its error or panic fails it.
/// `store_retry_at` is when a run whose checkpoint failed is due again.
pub(super) fn next(halt: Option<Halt>, result: HandlerResult, store_retry_at: i64) -> Next {
    match (halt, result) {
        (Some(Halt::Retry { step, at }), _) => {
            let error = step.error.clone();
            Next::Retry { step, at, error }
        }
        (Some(Halt::Sleep { step, until }), _) => Next::Sleep { step, until },
        (
            Some(Halt::Wait {
                step,
                until,
                listener,
                intake,
            }),
            _,
        ) => Next::Wait {
            step,
            until,
            listener,
            intake,
        },
        (Some(Halt::Fail { step, error }), _) => Next::Fail {
            step: Some(step),
            error,
        },
        (Some(Halt::Release), _) => Next::Release,
        (Some(Halt::Lost), _) => Next::Lost,
        (Some(Halt::Store(error)), _) => Next::StoreFailed {
            error,
            at: store_retry_at,
        },
        (None, Ok(Ok(output))) => Next::Complete { output },
        (None, Ok(Err(interrupt))) => Next::Fail {
            step: None,
            error: match interrupt.0 {
                Reason::Failed(msg) => msg,
                Reason::Parked => "the run stopped without a recorded reason".into(),
            },
        },
        (None, Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Next::Fail {
                step: None,
                error: format!("handler panicked: {msg}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::StepError;
    use crate::engine::intake::PlannedRun;
    use crate::state::{ListenerKind, StepKind, StepStatus};
    use crate::store::{NewEvent, NewRun};

    const NOW: i64 = 1_000_000;
    const STORE_RETRY_AT: i64 = NOW + 1_000;

    fn step(kind: StepKind, status: StepStatus, error: Option<&str>) -> StepUpdate {
        StepUpdate {
            key: "charge".into(),
            name: "charge".into(),
            position: 0,
            kind,
            status,
            attempts: 1,
            output: None,
            error: error.map(str::to_owned),
            wake_at: None,
            started_at: NOW,
            ended_at: None,
        }
    }

    fn listener() -> Box<NewListener> {
        Box::new(NewListener {
            id: "lis_1".into(),
            run_id: "run_1".parse().unwrap(),
            kind: ListenerKind::Wait,
            step_key: Some("approval".into()),
            event_name: "app/approved".into(),
            match_path: None,
            match_value: None,
            condition: None,
            expires_at: Some(NOW + 60_000),
        })
    }

    fn parked() -> HandlerResult {
        Ok(Err(Interrupt(Reason::Parked)))
    }

    #[test]
    fn a_returned_output_completes_the_run() {
        let next = next(None, Ok(Ok(json!({"ok": true}))), STORE_RETRY_AT);
        assert!(matches!(next, Next::Complete { output } if output == json!({"ok": true})));
    }

    #[test]
    fn a_failed_attempt_with_retries_left_queues_the_run_for_its_retry() {
        let errored = step(StepKind::Run, StepStatus::Errored, Some("card declined"));
        let halt = Halt::Retry {
            step: errored,
            at: NOW + 5_000,
        };
        // The halt wins over the interrupt the handler returned with.
        match next(Some(halt), parked(), STORE_RETRY_AT) {
            Next::Retry { step, at, error } => {
                assert_eq!(at, NOW + 5_000);
                assert_eq!(error.as_deref(), Some("card declined"));
                assert_eq!(step.status, StepStatus::Errored);
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn exhausted_retries_and_non_retriable_errors_fail_with_the_step() {
        // The step tools mark both the same way: the step failed, the run fails with it.
        for error in [
            "step 'charge' failed: declined",
            "step 'charge' failed: fraud",
        ] {
            let halt = Halt::Fail {
                step: step(StepKind::Run, StepStatus::Failed, Some(error)),
                error: error.into(),
            };
            match next(Some(halt), parked(), STORE_RETRY_AT) {
                Next::Fail {
                    step: Some(step),
                    error: got,
                } => {
                    assert_eq!(got, error);
                    assert_eq!(step.status, StepStatus::Failed);
                }
                other => panic!("expected a failure, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_sleep_parks_the_run_until_it_is_over() {
        let halt = Halt::Sleep {
            step: step(StepKind::Sleep, StepStatus::Sleeping, None),
            until: NOW + 3_600_000,
        };
        match next(Some(halt), parked(), STORE_RETRY_AT) {
            Next::Sleep { step, until } => {
                assert_eq!(until, NOW + 3_600_000);
                assert_eq!(step.kind, StepKind::Sleep);
            }
            other => panic!("expected a sleep, got {other:?}"),
        }
    }

    #[test]
    fn a_wait_for_an_event_parks_the_run_with_its_listener() {
        let halt = Halt::Wait {
            step: step(StepKind::Wait, StepStatus::Waiting, None),
            until: NOW + 60_000,
            listener: Some(listener()),
            intake: None,
        };
        match next(Some(halt), parked(), STORE_RETRY_AT) {
            Next::Wait {
                until,
                listener: Some(listener),
                intake: None,
                ..
            } => {
                assert_eq!(until, NOW + 60_000);
                assert_eq!(listener.kind, ListenerKind::Wait);
            }
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn an_invoke_parks_the_run_with_the_invoked_run_to_start() {
        let intake = Intake {
            event: NewEvent {
                id: "ev_1".parse().unwrap(),
                dedupe_key: None,
                dedupe_for_ms: None,
                external_id: None,
                name: "paysteps/function.invoked".into(),
                source: "invoke".into(),
                data: "{}".into(),
                ts: NOW,
                received_at: NOW,
                object_id: None,
                customer: None,
            },
            runs: vec![PlannedRun::plain(&"child".parse().unwrap())],
            lease: None,
        };
        let halt = Halt::Wait {
            step: step(StepKind::Invoke, StepStatus::Waiting, None),
            until: NOW + 60_000,
            listener: Some(listener()),
            intake: Some(Box::new(intake)),
        };
        match next(Some(halt), parked(), STORE_RETRY_AT) {
            Next::Wait {
                step,
                intake: Some(intake),
                ..
            } => {
                assert_eq!(step.kind, StepKind::Invoke);
                let runs: Vec<&NewRun> = intake.runs.iter().map(|p| &p.run).collect();
                assert_eq!(runs.len(), 1);
                assert_eq!(runs[0].function_id, "child");
            }
            other => panic!("expected a wait on the invoked run, got {other:?}"),
        }
    }

    #[test]
    fn shutdown_releases_and_a_lost_or_cancelled_run_is_left_alone() {
        assert!(matches!(
            next(Some(Halt::Release), parked(), STORE_RETRY_AT),
            Next::Release
        ));
        // A run cancelled meanwhile shows as a lost lease at the next step boundary.
        assert!(matches!(
            next(Some(Halt::Lost), parked(), STORE_RETRY_AT),
            Next::Lost
        ));
        // Even when the handler returned an output after losing its lease.
        assert!(matches!(
            next(Some(Halt::Lost), Ok(Ok(json!(1))), STORE_RETRY_AT),
            Next::Lost
        ));
    }

    #[test]
    fn a_failed_checkpoint_queues_the_run_after_the_backoff_base() {
        match next(
            Some(Halt::Store("disk I/O error".into())),
            Ok(Ok(json!(null))),
            STORE_RETRY_AT,
        ) {
            Next::StoreFailed { error, at } => {
                assert_eq!(error, "disk I/O error");
                assert_eq!(at, STORE_RETRY_AT);
            }
            other => panic!("expected a store failure, got {other:?}"),
        }
    }

    #[test]
    fn a_handler_that_gives_up_or_panics_fails_without_a_step() {
        let gave_up = next(None, Ok(Err(Interrupt::fail("no user"))), STORE_RETRY_AT);
        assert!(matches!(gave_up, Next::Fail { step: None, error } if error == "no user"));

        let step_error: Interrupt = StepError::non_retriable("oops").into();
        let propagated = next(None, Ok(Err(step_error)), STORE_RETRY_AT);
        assert!(matches!(propagated, Next::Fail { step: None, .. }));

        let unexplained = next(None, parked(), STORE_RETRY_AT);
        assert!(matches!(
            unexplained,
            Next::Fail { step: None, error } if error == "the run stopped without a recorded reason"
        ));

        for (payload, expected) in [
            (
                Box::new("boom") as Box<dyn Any + Send>,
                "handler panicked: boom",
            ),
            (Box::new(String::from("bang")), "handler panicked: bang"),
            (Box::new(42_u8), "handler panicked: unknown panic"),
        ] {
            let panicked = next(None, Err(payload), STORE_RETRY_AT);
            assert!(
                matches!(&panicked, Next::Fail { step: None, error } if error == expected),
                "{panicked:?}"
            );
        }
    }

    #[test]
    fn outcomes_are_counted_under_their_labels() {
        let labels: Vec<_> = [
            Outcome::Completed,
            Outcome::Failed,
            Outcome::Retrying,
            Outcome::Sleeping,
            Outcome::Waiting,
            Outcome::Released,
            Outcome::Lost,
        ]
        .into_iter()
        .map(Outcome::as_str)
        .collect();
        assert_eq!(
            labels,
            [
                "completed",
                "failed",
                "retrying",
                "sleeping",
                "waiting",
                "released",
                "lost"
            ]
        );
    }
}
