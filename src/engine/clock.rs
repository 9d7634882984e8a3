use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the engine reads the time: the system clock, or a manual one that tests move.
///
/// A manual clock makes sleeps, retries and cron ticks happen when a test says so:
///
/// ```no_run
/// use std::time::Duration;
///
/// use paysteps::{Clock, Engine, EngineConfig};
///
/// # async fn demo(store: paysteps::Store) -> Result<(), Box<dyn std::error::Error>> {
/// let clock = Clock::manual(1_767_225_600_000); // 2026-01-01T00:00:00Z
/// let config = EngineConfig { clock: clock.clone(), ..EngineConfig::default() };
/// let engine = Engine::builder(store).config(config).build()?;
/// // … ingest events, then let an hour pass and execute what fell due:
/// clock.advance(Duration::from_secs(3600));
/// engine.run_until_idle().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The operating system's clock.
    #[default]
    System,
    /// A clock that moves only when told to ([`Clock::advance`]), holding milliseconds since
    /// the Unix epoch; for tests that drive sleeps, retries and cron ticks themselves.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `start_ms` (milliseconds since the Unix epoch).
    pub fn manual(start_ms: i64) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_now_ms(),
            Clock::Manual(now) => now.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; the system clock cannot be moved.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(now) = self {
            now.fetch_add(duration_ms(by), Ordering::SeqCst);
        }
    }
}

/// The system clock now, in milliseconds since the Unix epoch (0 if it reads before 1970).
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
