//! What a handler is given: [`Ctx`].

use super::Step;
use crate::engine::event::{Event, FUNCTION_FAILED, Failure};
use crate::ids::{FunctionId, RunId};

/// What a handler is given: its event, its run, and the step tools.
#[derive(Clone)]
pub struct Ctx {
    /// The event that started the run.
    pub event: Event,
    /// paysteps' id of the run, `run_…`; the same across retries and re-entries.
    pub run_id: RunId,
    /// The id of the function being run (`<id>.on_failure` in a failure handler).
    pub function_id: FunctionId,
    /// Executions of this run so far, counting this one.
    pub attempt: i64,
    /// The step tools: [`Step::run`], [`Step::run_tx`], [`Step::sleep`],
    /// [`Step::wait_for_event`], [`Step::send_event`], [`Step::invoke`].
    pub step: Step,
}

impl Ctx {
    /// In a failure handler: what failed. `None` in an ordinary function.
    pub fn failure(&self) -> Option<Failure> {
        (self.event.name == FUNCTION_FAILED)
            .then(|| serde_json::from_value(self.event.data.clone()).ok())
            .flatten()
    }
}
