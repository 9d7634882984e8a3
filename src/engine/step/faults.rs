//! Injected step failures, compiled only with the `testing` feature (the crate's own
//! tests turn it on): a test names a step and the engine fails its next attempts, or
//! all of them, with a retriable error, as an outage of what the step calls would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::StepError;

/// Which steps fail, installed with [`EngineBuilder::fault_plan`](crate::engine::EngineBuilder::fault_plan).
/// Steps are matched by name in every function of the engine; every attempt that
/// executes (`run`, `compute` or `run_tx`; not a memoized step) is counted. Cheap to
/// clone: clones share the plan, so a test keeps one to change it while the engine runs.
#[derive(Clone, Default)]
pub struct FaultPlan(Arc<Mutex<HashMap<String, StepFaults>>>);

#[derive(Debug, Default)]
struct StepFaults {
    failing: Failing,
    attempts: u32,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Failing {
    #[default]
    No,
    Times(u32),
    Always,
}

/// The error an injected fault fails a step attempt with (retriable, like a real outage).
#[derive(Debug, thiserror::Error)]
#[error("injected fault in step '{0}'")]
pub struct InjectedFault(pub String);

impl FaultPlan {
    /// Fails the next `times` attempts of every step named `step`.
    pub fn fail(&self, step: &str, times: u32) {
        self.plans().entry(step.to_owned()).or_default().failing = if times == 0 {
            Failing::No
        } else {
            Failing::Times(times)
        };
    }

    /// Fails every attempt of steps named `step` until [`FaultPlan::clear`].
    pub fn fail_always(&self, step: &str) {
        self.plans().entry(step.to_owned()).or_default().failing = Failing::Always;
    }

    /// Stops failing `step`; its attempt count is kept.
    pub fn clear(&self, step: &str) {
        if let Some(plan) = self.plans().get_mut(step) {
            plan.failing = Failing::No;
        }
    }

    /// How many attempts of steps named `step` have started.
    pub fn attempts(&self, step: &str) -> u32 {
        self.plans().get(step).map_or(0, |plan| plan.attempts)
    }

    /// Counts an attempt of `step` and fails it when a fault is planned for it.
    pub(crate) fn check(&self, step: &str) -> Result<(), StepError> {
        let mut plans = self.plans();
        let plan = plans.entry(step.to_owned()).or_default();
        plan.attempts = plan.attempts.saturating_add(1);
        let fail = match plan.failing {
            Failing::No => false,
            Failing::Always => true,
            Failing::Times(n) => {
                plan.failing = if n > 1 {
                    Failing::Times(n - 1)
                } else {
                    Failing::No
                };
                true
            }
        };
        if fail {
            return Err(StepError::retriable(InjectedFault(step.to_owned())));
        }
        Ok(())
    }

    fn plans(&self) -> MutexGuard<'_, HashMap<String, StepFaults>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_faults_fail_the_named_step_and_every_attempt_is_counted() {
        let faults = FaultPlan::default();
        faults.fail("charge", 2);
        assert!(faults.check("charge").is_err());
        assert!(faults.check("other").is_ok());
        assert!(faults.check("charge").is_err());
        assert!(faults.check("charge").is_ok());
        assert_eq!(faults.attempts("charge"), 3);
        assert_eq!(faults.attempts("other"), 1);
        assert_eq!(faults.attempts("never"), 0);

        faults.fail_always("charge");
        for _ in 0..5 {
            let err = faults.check("charge").unwrap_err();
            assert!(err.is_retriable());
            assert_eq!(err.to_string(), "injected fault in step 'charge'");
        }
        faults.clear("charge");
        assert!(faults.check("charge").is_ok());
        assert_eq!(faults.attempts("charge"), 9);

        faults.fail("charge", 0);
        assert!(faults.check("charge").is_ok());
    }
}
