//! Flow control a function declares: how many of its runs may be in progress, how fast
//! they may start, which events start none, and which events cancel them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::clock::duration_ms;
use super::expr::Expr;
use super::path;
use crate::ids::FunctionId;

/// At most `limit` runs in progress at once, across the function or per key. A run holds
/// its slot from its start to its end (sleeping and waiting included), so a limit of one
/// per key runs one key's events one after another, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concurrency {
    /// Runs in progress at once (per key value, when there is a key).
    pub limit: u32,
    /// A path into the event (see [`crate::engine::Function::concurrency_per`]).
    pub key: Option<String>,
}

/// At most `limit` runs started per `period`, across the function or per key. Runs over
/// the limit are scheduled for later, never dropped. `burst` runs may start back to back
/// before the spacing of `period / limit` applies (1 unless set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// Runs started per `period` (per key value, when there is a key).
    pub limit: u32,
    /// The window `limit` applies to.
    pub period: Duration,
    /// Runs that may start back to back before the spacing applies; at least 1.
    pub burst: u32,
    /// A path into the event (see [`crate::engine::path`]); the limit applies per value
    /// found there. `None` for one limit across the function.
    pub key: Option<String>,
}

/// Cancels a function's run when an event named `event` arrives whose value at `matching`
/// equals the run's own event's value there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelOn {
    /// Name of the event that cancels the run.
    pub event: String,
    /// A path read in both events (see [`crate::engine::path`]) whose values must be equal.
    pub matching: String,
}

/// Everything a function declares about flow control.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Flow {
    pub concurrency: Option<Concurrency>,
    pub throttle: Option<Throttle>,
    /// A path whose value, once seen, starts no further run of the function for 24 h.
    pub idempotency: Option<String>,
    pub cancel_on: Vec<CancelOn>,
    /// Events that cancel a run when a CEL condition over `event` (the run's own) and
    /// `async` (the arriving one) holds: event name and condition.
    pub cancel_when: Vec<(String, String)>,
    /// Keys written as expressions (an SDK function's), read instead of the paths.
    pub exprs: Option<Arc<ExprKeys>>,
}

/// Flow keys written as expressions over the event as the function's code sees it.
pub(crate) struct ExprKeys {
    pub concurrency: Option<Expr>,
    pub throttle: Option<Expr>,
    pub idempotency: Option<Expr>,
    /// The event the expressions read, from the stored event's name and payload.
    pub shape: fn(&str, &Value) -> Value,
}

impl PartialEq for ExprKeys {
    fn eq(&self, other: &Self) -> bool {
        self.concurrency == other.concurrency
            && self.throttle == other.throttle
            && self.idempotency == other.idempotency
    }
}

impl Eq for ExprKeys {}

impl fmt::Debug for ExprKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExprKeys")
            .field("concurrency", &self.concurrency)
            .field("throttle", &self.throttle)
            .field("idempotency", &self.idempotency)
            .finish()
    }
}

/// How long an idempotency key holds.
pub(crate) const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// What flow control asks of one new run, worked out from its event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunFlow {
    /// The concurrency key and its limit.
    pub concurrency: Option<(String, i64)>,
    /// The throttle key, its spacing and its burst allowance, in milliseconds.
    pub throttle: Option<(String, i64, i64)>,
    pub idempotency_key: Option<String>,
    /// Event names and the values that cancel the run.
    pub cancel_on: Vec<(String, String, String)>,
    /// Event names and the conditions under which they cancel the run.
    pub cancel_when: Vec<(String, String)>,
}

impl RunFlow {
    pub fn is_plain(&self) -> bool {
        *self == RunFlow::default()
    }
}

impl Flow {
    /// The keys of a run of `function_id` started by this event.
    pub fn for_event(&self, function_id: &FunctionId, name: &str, payload: &Value) -> RunFlow {
        let read = |p: &str| {
            path::lookup(name, payload, p).map_or_else(String::new, |v| path::key_text(&v))
        };
        // The event as the expressions read it, made once for all of them.
        let exprs = self.exprs.as_deref().map(|e| (e, (e.shape)(name, payload)));
        let by_expr = |pick: fn(&ExprKeys) -> Option<&Expr>| {
            let (keys, event) = exprs.as_ref()?;
            pick(keys).map(|expr| expr.key(&[("event", event)]).unwrap_or_default())
        };
        let keyed = |scope: &str, key: &Option<String>, expr: Option<String>| match (expr, key) {
            (Some(value), _) => format!("{function_id}:{scope}:{value}"),
            (None, None) => format!("{function_id}:{scope}"),
            (None, Some(p)) => format!("{function_id}:{scope}:{}", read(p)),
        };
        let idempotency =
            by_expr(|e| e.idempotency.as_ref()).or_else(|| self.idempotency.as_deref().map(read));
        RunFlow {
            concurrency: self.concurrency.as_ref().map(|c| {
                let key = keyed("concurrency", &c.key, by_expr(|e| e.concurrency.as_ref()));
                (key, i64::from(c.limit.max(1)))
            }),
            throttle: self.throttle.as_ref().map(|t| {
                let spacing = (duration_ms(t.period) / i64::from(t.limit.max(1))).max(1);
                let burst = i64::from(t.burst.max(1) - 1) * spacing;
                let key = keyed("throttle", &t.key, by_expr(|e| e.throttle.as_ref()));
                (key, spacing, burst)
            }),
            idempotency_key: idempotency.map(|value| format!("idempotency:{function_id}:{value}")),
            cancel_on: self
                .cancel_on
                .iter()
                .filter_map(|c| {
                    path::lookup(name, payload, &c.matching)
                        .map(|v| (c.event.clone(), c.matching.clone(), path::key_text(&v)))
                })
                .collect(),
            cancel_when: self.cancel_when.clone(),
        }
    }
}

impl Flow {
    /// The settings in words, for the functions page: `concurrency 1 per event.data.user`,
    /// `throttle 10 per 60 s`, `idempotency by data.order`, `cancelled by app/x matching data.id`.
    pub fn describe(&self) -> Vec<String> {
        let exprs = self.exprs.as_deref();
        let key = |expr: Option<&Expr>, path: &Option<String>| {
            expr.map(|e| e.source().to_owned()).or_else(|| path.clone())
        };
        let mut said = Vec::new();
        if let Some(c) = &self.concurrency {
            said.push(
                match key(exprs.and_then(|e| e.concurrency.as_ref()), &c.key) {
                    Some(key) => format!("concurrency {} per {key}", c.limit),
                    None => format!("concurrency {}", c.limit),
                },
            );
        }
        if let Some(t) = &self.throttle {
            let mut text = format!("throttle {} per {} s", t.limit, t.period.as_secs_f64());
            if t.burst > 1 {
                text.push_str(&format!(", burst {}", t.burst));
            }
            if let Some(key) = key(exprs.and_then(|e| e.throttle.as_ref()), &t.key) {
                text.push_str(&format!(", per {key}"));
            }
            said.push(text);
        }
        if let Some(key) = key(
            exprs.and_then(|e| e.idempotency.as_ref()),
            &self.idempotency,
        ) {
            said.push(format!("idempotency by {key}"));
        }
        for c in &self.cancel_on {
            said.push(format!("cancelled by {} matching {}", c.event, c.matching));
        }
        for (event, condition) in &self.cancel_when {
            said.push(format!("cancelled by {event} if {condition}"));
        }
        said
    }
}

/// When a throttled run may start, given the key's next free time (`None` for a new
/// key), and the key's next free time after it: starts are `spacing` apart, except that
/// up to `burst` milliseconds of them may be taken early.
pub(crate) fn throttle_slot(
    next_free: Option<i64>,
    now: i64,
    spacing: i64,
    burst: i64,
) -> (i64, i64) {
    let next_free = next_free.unwrap_or(now).max(now - burst);
    let start = now.max(next_free - burst);
    (start, next_free.max(start) + spacing)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn starts(n: usize, now: i64, spacing: i64, burst: i64) -> Vec<i64> {
        let mut next = None;
        (0..n)
            .map(|_| {
                let (start, after) = throttle_slot(next, now, spacing, burst);
                next = Some(after);
                start
            })
            .collect()
    }

    #[test]
    fn a_throttle_spaces_starts_evenly() {
        // 2 per second: one every 500 ms.
        assert_eq!(starts(4, 1_000, 500, 0), vec![1_000, 1_500, 2_000, 2_500]);
    }

    #[test]
    fn a_burst_lets_the_first_starts_through_at_once() {
        assert_eq!(starts(4, 0, 500, 500), vec![0, 0, 500, 1_000]);
    }

    #[test]
    fn a_quiet_key_starts_at_once_again() {
        let (_, next) = throttle_slot(None, 0, 500, 0);
        assert_eq!(throttle_slot(Some(next), 10_000, 500, 0), (10_000, 10_500));
    }

    #[test]
    fn keys_come_from_the_event() {
        let flow = Flow {
            concurrency: Some(Concurrency {
                limit: 1,
                key: Some("data.object.customer".into()),
            }),
            idempotency: Some("data.object.id".into()),
            cancel_on: vec![CancelOn {
                event: "stripe/customer.deleted".into(),
                matching: "data.object.customer".into(),
            }],
            ..Flow::default()
        };
        let envelope = json!({"data": {"object": {"id": "in_1", "customer": "cus_1"}}});
        let run = flow.for_event(&"f".parse().unwrap(), "stripe/invoice.paid", &envelope);
        assert_eq!(run.concurrency, Some(("f:concurrency:cus_1".into(), 1)));
        assert_eq!(run.idempotency_key.as_deref(), Some("idempotency:f:in_1"));
        assert_eq!(
            run.cancel_on,
            vec![(
                "stripe/customer.deleted".into(),
                "data.object.customer".into(),
                "cus_1".into()
            )]
        );
    }

    #[test]
    fn expression_keys_read_the_event_as_the_function_sees_it() {
        let expr = |s: &str| Some(Expr::compile(s, &["event"]).unwrap());
        // An SDK function sees `{name, data: <payload>}`, whatever the source.
        fn shape(name: &str, payload: &Value) -> Value {
            json!({ "name": name, "data": payload })
        }
        let flow = Flow {
            concurrency: Some(Concurrency {
                limit: 2,
                key: None,
            }),
            throttle: Some(Throttle {
                limit: 10,
                period: Duration::from_secs(60),
                burst: 1,
                key: None,
            }),
            exprs: Some(Arc::new(ExprKeys {
                concurrency: expr("event.data.user"),
                throttle: expr("event.data.user + '/' + event.data.plan"),
                idempotency: expr("event.data.order"),
                shape,
            })),
            ..Flow::default()
        };
        let id: FunctionId = "app-f".parse().unwrap();
        let run = flow.for_event(
            &id,
            "app/order",
            &json!({"user": "u1", "plan": "pro", "order": 7}),
        );
        assert_eq!(run.concurrency, Some(("app-f:concurrency:u1".into(), 2)));
        assert_eq!(
            run.throttle.map(|t| t.0).as_deref(),
            Some("app-f:throttle:u1/pro")
        );
        assert_eq!(run.idempotency_key.as_deref(), Some("idempotency:app-f:7"));
        // A key the event lacks is empty, as a missing path is.
        let run = flow.for_event(&id, "app/order", &json!({}));
        assert_eq!(run.concurrency, Some(("app-f:concurrency:".into(), 2)));
    }
}
