//! A run's stored steps as the app reads them back, and what a run may hold.

use serde_json::Value;

use super::events::to_sdk;
use super::protocol::{DISCOVERY, Memo, sdk_error};
use crate::engine::{Event, Finished, Interrupt};
use crate::state::{RunStatus, StepKind, StepStatus};
use crate::store::StepRow;

/// Where a stored step stands for the next call.
pub(super) enum Stored {
    /// It ended: the app reads this.
    Memo(Memo),
    /// Its last attempt failed; it is called again with the attempts it has had.
    Errored { attempts: u32 },
    /// It is sleeping or waiting, or it is no step of the app's: the app reports it again.
    Pending,
}

/// A stored step for the next call.
pub(super) fn read(row: &StepRow) -> Stored {
    let memo = match (row.kind, row.status) {
        (_, StepStatus::Errored) => {
            return Stored::Errored {
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            };
        }
        _ if row.step_key == DISCOVERY => return Stored::Pending,
        (StepKind::Run, StepStatus::Completed) => Memo::Data(parse(row.output.as_deref())),
        (StepKind::Run, StepStatus::Failed) => Memo::Error(error_value(row.error.as_deref())),
        (StepKind::Sleep, StepStatus::Completed) => Memo::Nothing,
        (StepKind::Wait, StepStatus::Completed) => match parse(row.output.as_deref()) {
            Value::Null => Memo::Nothing,
            event => Memo::Event(event_to_sdk(event)),
        },
        (StepKind::Invoke, StepStatus::Completed) => invoked_memo(row.output.as_deref()),
        _ => return Stored::Pending,
    };
    Stored::Memo(memo)
}

/// The name of the error a step is stored with while its app cannot be reached.
const UNREACHABLE: &str = "AppUnreachable";

/// The error stored while the app cannot be reached.
pub(super) fn unreachable_error(message: &str) -> Value {
    sdk_error(
        UNREACHABLE,
        &format!("the app could not be reached: {message}"),
    )
}

/// Whether a stored error is [`unreachable_error`]'s.
pub(super) fn is_unreachable(error: Option<&str>) -> bool {
    error
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
        .is_some_and(|e| e["name"] == UNREACHABLE)
}

/// Most steps a run may have, as in Inngest.
pub(super) const MAX_STEPS: usize = 1_000;

/// Largest output a step may return, as in Inngest.
pub(super) const MAX_STEP_OUTPUT: usize = 4 << 20;

/// Fails the run, as Inngest does, when a step's output or the run's steps are more
/// than a run may hold: every call carries them all.
pub(super) fn check_limits(
    name: &str,
    memoized: usize,
    output: Option<&str>,
) -> Result<(), Interrupt> {
    if memoized >= MAX_STEPS {
        return Err(Interrupt::fail(format!(
            "step '{name}' would be the run's {}th: a run holds at most {MAX_STEPS} steps",
            memoized + 1
        )));
    }
    match output.map(str::len) {
        Some(len) if len > MAX_STEP_OUTPUT => Err(Interrupt::fail(format!(
            "step '{name}' returned {len} bytes: a step's output holds at most 4 MiB"
        ))),
        _ => Ok(()),
    }
}

fn parse(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// A stored error: the SDK's `{name, message, stack}` as JSON, or plain text from before.
fn error_value(text: Option<&str>) -> Value {
    match text.map(serde_json::from_str::<Value>) {
        Some(Ok(value @ Value::Object(_))) => value,
        _ => sdk_error("Error", text.unwrap_or("step failed")),
    }
}

/// An invocation's end as the app reads it: the invoked run's output, or its error.
fn invoked_memo(output: Option<&str>) -> Memo {
    let finished = serde_json::from_value::<Event>(parse(output))
        .ok()
        .and_then(|event| serde_json::from_value::<Finished>(event.data).ok());
    match finished {
        Some(f) if f.status == RunStatus::Completed => Memo::Data(f.output.unwrap_or(Value::Null)),
        Some(f) => Memo::Error(sdk_error(
            "Error",
            f.error.as_deref().unwrap_or("the invoked run failed"),
        )),
        None => Memo::Error(sdk_error(
            "Error",
            "the invoked run's result cannot be read",
        )),
    }
}

/// A stored event (as `wait_for_event` keeps it) as the SDK reads it.
fn event_to_sdk(stored: Value) -> Value {
    match serde_json::from_value::<Event>(stored.clone()) {
        Ok(event) => to_sdk(&event),
        Err(_) => stored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_holds_at_most_a_thousand_steps_of_at_most_four_mib_each() {
        assert!(check_limits("s", MAX_STEPS - 1, Some("1")).is_ok());
        assert!(check_limits("s", MAX_STEPS, Some("1")).is_err());
        let big = "x".repeat(MAX_STEP_OUTPUT + 1);
        assert!(check_limits("s", 0, Some(&big)).is_err());
        assert!(check_limits("s", 0, Some(&big[1..])).is_ok());
        assert!(check_limits("s", 0, None).is_ok());
    }

    fn row(
        kind: StepKind,
        status: StepStatus,
        output: Option<&str>,
        error: Option<&str>,
    ) -> StepRow {
        StepRow {
            run_id: "run_1".parse().unwrap(),
            step_key: "6f951bc10819e968dbee7ec0f3f6dad953fa9b27".into(),
            name: "load-user".into(),
            position: 0,
            kind,
            status,
            attempts: 2,
            output: output.map(str::to_owned),
            error: error.map(str::to_owned),
            wake_at: None,
            started_at: 0,
            ended_at: Some(1),
        }
    }

    fn memo(row: &StepRow) -> Option<Memo> {
        match read(row) {
            Stored::Memo(memo) => Some(memo),
            _ => None,
        }
    }

    #[test]
    fn stored_steps_read_back_as_the_app_memoized_them() {
        use serde_json::json;
        let done = row(
            StepKind::Run,
            StepStatus::Completed,
            Some(r#"{"id":"u1"}"#),
            None,
        );
        assert_eq!(memo(&done), Some(Memo::Data(json!({"id": "u1"}))));
        let failed = row(
            StepKind::Run,
            StepStatus::Failed,
            None,
            Some(r#"{"name":"E","message":"m"}"#),
        );
        assert_eq!(
            memo(&failed),
            Some(Memo::Error(json!({"name": "E", "message": "m"})))
        );
        let slept = row(StepKind::Sleep, StepStatus::Completed, None, None);
        assert_eq!(memo(&slept), Some(Memo::Nothing));
        let timed_out = row(StepKind::Wait, StepStatus::Completed, Some("null"), None);
        assert_eq!(memo(&timed_out), Some(Memo::Nothing));
        let event = r#"{"id":"ev_1","external_id":null,"name":"app/x","data":{"a":1},"ts":5}"#;
        let matched = row(StepKind::Wait, StepStatus::Completed, Some(event), None);
        assert_eq!(
            memo(&matched),
            Some(Memo::Event(
                json!({"id": "ev_1", "name": "app/x", "data": {"a": 1}, "ts": 5, "user": {}})
            ))
        );
        let finished = r#"{"id":"ev_2","external_id":null,"name":"paysteps/function.finished","ts":5,
            "data":{"run_id":"run_2","function_id":"f","status":"completed","output":42,"error":null}}"#;
        let invoked = row(
            StepKind::Invoke,
            StepStatus::Completed,
            Some(finished),
            None,
        );
        assert_eq!(memo(&invoked), Some(Memo::Data(json!(42))));
        assert!(matches!(
            read(&row(StepKind::Run, StepStatus::Errored, None, Some("x"))),
            Stored::Errored { attempts: 2 }
        ));
        assert!(matches!(
            read(&row(StepKind::Sleep, StepStatus::Sleeping, None, None)),
            Stored::Pending
        ));
        let mut discovery = row(StepKind::Run, StepStatus::Completed, None, None);
        discovery.step_key = DISCOVERY.into();
        assert!(matches!(read(&discovery), Stored::Pending));
    }
}
