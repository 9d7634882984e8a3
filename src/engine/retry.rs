//! Retry decisions: pure functions of the policy and the attempt number.

use std::time::Duration;

use super::clock::duration_ms;

/// Exponential backoff with jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The scale of the delays: the first retry waits between half of `base` and `base`,
    /// and each further retry doubles that.
    pub base: Duration,
    /// The cap on the doubled delay: no retry waits longer than this.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60 * 60),
        }
    }
}

impl Backoff {
    /// Delay before attempt `failed_attempts + 1`, given `jitter` in `[0, 1)`:
    /// half the exponential delay is fixed, the other half is spread by the jitter.
    pub fn delay_ms(&self, failed_attempts: u32, jitter: f64) -> i64 {
        let exp = failed_attempts.saturating_sub(1).min(30);
        let full = duration_ms(self.base)
            .saturating_mul(1_i64 << exp)
            .min(duration_ms(self.max));
        let half = full / 2;
        half + (half as f64 * jitter.clamp(0.0, 1.0)) as i64
    }
}

/// What happens after a step attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryIn(i64),
    GiveUp,
}

/// `attempts` counts the attempt that just failed; `retries` is the function's budget
/// beyond the first attempt.
pub fn after_failure(
    backoff: &Backoff,
    retries: u32,
    attempts: u32,
    retriable: bool,
    jitter: f64,
) -> AfterFailure {
    if !retriable || attempts > retries {
        AfterFailure::GiveUp
    } else {
        AfterFailure::RetryIn(backoff.delay_ms(attempts, jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(1000),
            max: Duration::from_millis(5000),
        };
        assert_eq!(b.delay_ms(1, 0.0), 500);
        assert_eq!(b.delay_ms(1, 0.999_999), 999);
        assert_eq!(b.delay_ms(2, 0.0), 1000);
        assert_eq!(b.delay_ms(3, 0.0), 2000);
        assert_eq!(b.delay_ms(4, 0.0), 2500);
        assert_eq!(b.delay_ms(40, 1.0), 5000);
    }

    #[test]
    fn three_retries_mean_four_attempts() {
        let b = Backoff::default();
        assert!(matches!(
            after_failure(&b, 3, 1, true, 0.5),
            AfterFailure::RetryIn(_)
        ));
        assert!(matches!(
            after_failure(&b, 3, 3, true, 0.5),
            AfterFailure::RetryIn(_)
        ));
        assert_eq!(after_failure(&b, 3, 4, true, 0.5), AfterFailure::GiveUp);
        assert_eq!(after_failure(&b, 3, 1, false, 0.5), AfterFailure::GiveUp);
        assert_eq!(after_failure(&b, 0, 1, true, 0.5), AfterFailure::GiveUp);
    }
}
