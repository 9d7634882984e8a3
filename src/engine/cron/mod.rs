//! Cron triggers: [`schedule`] parses expressions and decides, purely, which tick is due;
//! [`fire`] stores the tick's event and run.

mod fire;
mod schedule;

pub(super) use fire::{cron_loop, fire_cron};
pub use schedule::{Schedule, ScheduleError, TickDecision, decide};
