//! Cron schedules: 5-field expressions in a time zone, fired once per tick across every
//! process sharing the database, and once (not once per missed tick) after downtime.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed cron expression and the time zone its fields are read in.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    cron: Cron,
}

/// Why a cron expression or its time zone was refused by [`Schedule::parse`] (and so by
/// [`Trigger::cron`](crate::engine::Trigger::cron) and [`Trigger::cron_in`](crate::engine::Trigger::cron_in)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression is not a valid 5-field cron expression.
    #[error("invalid cron expression '{expr}': {reason}")]
    Expression {
        /// The expression as given.
        expr: String,
        /// What the parser found wrong with it.
        reason: String,
    },
    /// The time zone is not a known IANA name; holds the name given.
    #[error("unknown time zone '{0}'")]
    TimeZone(String),
}

impl Schedule {
    /// `expr` has five fields (minute hour day-of-month month day-of-week); `tz` is an
    /// IANA name such as `Europe/Paris` (UTC when `None`).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match tz {
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.into()))?,
            None => Tz::UTC,
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Expression {
                expr: expr.into(),
                reason: e.to_string(),
            })?;
        Ok(Schedule {
            expr: expr.to_owned(),
            tz,
            cron,
        })
    }

    /// The expression as given, e.g. `0 2 * * *`.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The IANA name of the time zone the fields are read in (`UTC` unless one was given).
    pub fn time_zone(&self) -> &str {
        self.tz.name()
    }

    /// The first tick strictly after `ms` (milliseconds since the Unix epoch).
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let at = self.at(ms)?;
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The latest tick at or before `ms`.
    pub fn latest_until(&self, ms: i64) -> Option<i64> {
        let at = self.at(ms)?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.with_timezone(&self.tz))
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({} in {})", self.expr, self.tz.name())
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl Eq for Schedule {}

/// What the scheduler should do for one cron function at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickDecision {
    /// Nothing fired yet: remember `now` as the start, fire from the next tick on.
    Start,
    /// Fire the latest due tick; every earlier missed tick collapses into it.
    Fire(i64),
    Wait,
}

/// `last` is the last tick fired (or the start time); pure, so downtime is testable.
pub fn decide(schedule: &Schedule, last: Option<i64>, now: i64) -> TickDecision {
    let Some(last) = last else {
        return TickDecision::Start;
    };
    match schedule.next_after(last) {
        Some(next) if next <= now => {
            TickDecision::Fire(schedule.latest_until(now).unwrap_or(next).max(next))
        }
        _ => TickDecision::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .expect("time")
    }

    #[test]
    fn next_fire_follows_the_expression_and_time_zone() {
        let daily = Schedule::parse("0 2 * * *", None).expect("parse");
        assert_eq!(
            daily.next_after(ms("2026-11-23T01:59:00Z")),
            Some(ms("2026-11-23T02:00:00Z"))
        );
        assert_eq!(
            daily.next_after(ms("2026-11-23T02:00:00Z")),
            Some(ms("2026-11-24T02:00:00Z"))
        );
        let paris = Schedule::parse("0 2 * * *", Some("Europe/Paris")).expect("parse");
        // 02:00 in Paris is 01:00 UTC in winter.
        assert_eq!(
            paris.next_after(ms("2026-11-23T00:00:00Z")),
            Some(ms("2026-11-23T01:00:00Z"))
        );
        let weekdays = Schedule::parse("30 9 * * 1-5", None).expect("parse");
        // 2026-11-21 is a Saturday: the next weekday 09:30 is Monday the 23rd.
        assert_eq!(
            weekdays.next_after(ms("2026-11-21T12:00:00Z")),
            Some(ms("2026-11-23T09:30:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(matches!(
            Schedule::parse("61 * * * *", None),
            Err(ScheduleError::Expression { .. })
        ));
        assert!(matches!(
            Schedule::parse("not cron", None),
            Err(ScheduleError::Expression { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 0 * * *", None),
            Err(ScheduleError::Expression { .. })
        ));
        assert_eq!(
            Schedule::parse("* * * * *", Some("Mars/Olympus")),
            Err(ScheduleError::TimeZone("Mars/Olympus".into()))
        );
    }

    #[test]
    fn downtime_fires_the_latest_missed_tick_once() {
        let every5 = Schedule::parse("*/5 * * * *", None).expect("parse");
        let start = ms("2026-11-23T10:01:00Z");
        assert_eq!(decide(&every5, None, start), TickDecision::Start);
        assert_eq!(
            decide(&every5, Some(start), ms("2026-11-23T10:04:59Z")),
            TickDecision::Wait
        );
        assert_eq!(
            decide(&every5, Some(start), ms("2026-11-23T10:05:00Z")),
            TickDecision::Fire(ms("2026-11-23T10:05:00Z"))
        );
        // Down for three hours: one fire, at the latest tick.
        let later = ms("2026-11-23T13:07:00Z");
        assert_eq!(
            decide(&every5, Some(start), later),
            TickDecision::Fire(ms("2026-11-23T13:05:00Z"))
        );
        assert_eq!(
            decide(&every5, Some(ms("2026-11-23T13:05:00Z")), later),
            TickDecision::Wait
        );
    }
}
