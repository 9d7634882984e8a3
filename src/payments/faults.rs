//! Injected step failures for tests and operations drills: the built-in functions call
//! [`Faults::check`] at the start of every step, so a named step can be made to fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::StepError;

/// Shared by every built-in Stripe function; cheap to clone.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<HashMap<String, FaultPlan>>>);

#[derive(Debug, Default)]
struct FaultPlan {
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

impl Faults {
    /// Fails the next `times` attempts of every step named `step`.
    pub fn fail(&self, step: &str, times: u32) {
        self.plans().entry(step.to_owned()).or_default().failing = if times == 0 {
            Failing::No
        } else {
            Failing::Times(times)
        };
    }

    /// Fails every attempt of steps named `step` until [`Faults::clear`].
    pub fn fail_always(&self, step: &str) {
        self.plans().entry(step.to_owned()).or_default().failing = Failing::Always;
    }

    /// Stops failing `step`; its attempt count is kept.
    pub fn clear(&self, step: &str) {
        if let Some(plan) = self.plans().get_mut(step) {
            plan.failing = Failing::No;
        }
    }

    /// How many attempts of steps named `step` have started (calls to [`Faults::check`]).
    pub fn attempts(&self, step: &str) -> u32 {
        self.plans().get(step).map_or(0, |plan| plan.attempts)
    }

    /// Counts an attempt of `step` and fails it when a fault is planned for it.
    pub fn check(&self, step: &str) -> Result<(), StepError> {
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

    fn plans(&self) -> MutexGuard<'_, HashMap<String, FaultPlan>> {
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
        let faults = Faults::default();
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
