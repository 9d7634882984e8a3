//! Live and test mode: Stripe keeps them apart (separate keys, endpoints and secrets), and
//! so does paysteps when `STRIPE_MODE` names one.

/// Which of Stripe's modes an installation processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Live-mode events only (`livemode: true`).
    Live,
    /// Test-mode events only (`livemode: false`).
    Test,
}

impl Mode {
    /// Whether an event with this `livemode` belongs to the mode.
    pub fn admits(self, livemode: bool) -> bool {
        livemode == matches!(self, Mode::Live)
    }

    /// `live` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }
}

/// The name under which an event of the other mode is stored: no function is triggered
/// by it, and the dashboard shows it as ignored.
pub fn ignored_name(event_type: &str) -> String {
    format!("ignored/stripe/{event_type}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_admits_its_own_events_only() {
        assert!(Mode::Live.admits(true) && !Mode::Live.admits(false));
        assert!(Mode::Test.admits(false) && !Mode::Test.admits(true));
        assert_eq!(ignored_name("invoice.paid"), "ignored/stripe/invoice.paid");
    }
}
