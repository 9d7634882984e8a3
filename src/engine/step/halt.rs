//! How the step tools stop a run: [`Interrupt`] for the handler, [`Halt`] for the worker.

use super::Step;
use crate::engine::error::StepError;
use crate::engine::intake::Intake;
use crate::store::{NewListener, StepUpdate};

/// Returned by step tools when the run must stop here for now (a retry is scheduled,
/// the run sleeps, it failed, or the worker is shutting down). Propagate it with `?`.
#[derive(Debug)]
pub struct Interrupt(pub(crate) Reason);

#[derive(Debug)]
pub(crate) enum Reason {
    /// The step tools recorded why; see [`Halt`].
    Parked,
    /// The handler itself gave up outside any step.
    Failed(String),
}

impl Interrupt {
    /// Fails the run now, without retries.
    pub fn fail(message: impl Into<String>) -> Interrupt {
        Interrupt(Reason::Failed(message.into()))
    }
}

impl From<StepError> for Interrupt {
    fn from(err: StepError) -> Self {
        Interrupt::fail(err.to_string())
    }
}

/// Why the step tools stopped a run, applied by the worker when the handler returns.
#[derive(Debug)]
pub(crate) enum Halt {
    Retry {
        step: StepUpdate,
        at: i64,
    },
    Fail {
        step: StepUpdate,
        error: String,
    },
    Sleep {
        step: StepUpdate,
        until: i64,
    },
    /// Parks the run as `waiting` until `until`, listening for an event or for an
    /// invoked run, whose intake is stored in the same transaction.
    Wait {
        step: StepUpdate,
        until: i64,
        listener: Option<Box<NewListener>>,
        intake: Option<Box<Intake>>,
    },
    /// The worker is shutting down: hand the run back untouched.
    Release,
    /// Another worker holds the run now, or it ended elsewhere: do nothing more.
    Lost,
    /// The store failed; the lease will expire and the run is taken up again.
    Store(String),
}

impl Step {
    /// Records why the run stops (the first halt wins) and interrupts the handler.
    pub(in crate::engine) fn halt(&self, halt: Halt) -> Interrupt {
        let mut progress = self.progress();
        if progress.halt.is_none() {
            progress.halt = Some(halt);
        }
        Interrupt(Reason::Parked)
    }

    pub(crate) fn take_halt(&self) -> Option<Halt> {
        self.progress().halt.take()
    }

    /// Whether a halt is pending.
    pub(in crate::engine) fn halted(&self) -> bool {
        self.progress().halt.is_some()
    }

    /// A step boundary: stop here when a halt is pending or the worker is shutting down.
    pub(crate) fn check_boundary(&self) -> Result<(), Interrupt> {
        if self.halted() {
            return Err(Interrupt(Reason::Parked));
        }
        if self.settings().shutdown.is_cancelled() {
            return Err(self.halt(Halt::Release));
        }
        Ok(())
    }
}
