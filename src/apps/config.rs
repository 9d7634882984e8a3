//! An app's registration, as its SDK sends it, read into functions paysteps can run.
//!
//! Everything a function declares is either carried out or refused here, with the
//! function and setting named: a sync that would silently drop a debounce or a rate
//! limit is worse than one that fails and says so on the Apps page.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::duration;
use crate::engine::Schedule;
use crate::engine::expr::Expr;

/// Retries of each step when a function sets none, as in Inngest.
pub const DEFAULT_RETRIES: u32 = 4;

/// Most retries a function may ask for.
pub const MAX_RETRIES: u32 = 20;

/// A registration: the in-band sync answer, or the body of `POST /fn/register`.
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    pub url: String,
    #[serde(alias = "appName")]
    pub app_id: String,
    #[serde(default)]
    pub sdk: Option<String>,
    #[serde(default)]
    pub framework: Option<String>,
    #[serde(default)]
    pub functions: Vec<RawFunction>,
}

/// A function as the SDK declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFunction {
    pub id: String,
    #[serde(default)]
    pub triggers: Vec<RawTrigger>,
    #[serde(default)]
    pub steps: BTreeMap<String, RawStep>,
    #[serde(default)]
    pub concurrency: Option<Value>,
    #[serde(default)]
    pub throttle: Option<RawThrottle>,
    #[serde(default)]
    pub idempotency: Option<String>,
    #[serde(default)]
    pub cancel: Option<Vec<RawCancel>>,
    /// Settings paysteps does not carry out; any of them refuses the sync.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawTrigger {
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub expression: Option<String>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub jitter: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawStep {
    pub runtime: RawRuntime,
    #[serde(default)]
    pub retries: Option<RawRetries>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawRuntime {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawRetries {
    pub attempts: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawThrottle {
    pub limit: u32,
    pub period: String,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawCancel {
    pub event: String,
    #[serde(default, rename = "if")]
    pub condition: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
}

/// A function of an app, checked and ready to register.
#[derive(Debug, Clone)]
pub struct AppFunction {
    /// The composite id, `<app>-<function>`.
    pub id: String,
    /// Where the app runs it.
    pub url: Url,
    pub triggers: Vec<AppTrigger>,
    /// Retries of each step, and of the function's code outside steps.
    pub retries: u32,
    pub concurrency: Option<ConcurrencySpec>,
    pub throttle: Option<ThrottleSpec>,
    pub idempotency: Option<Expr>,
    pub cancel: Vec<CancelSpec>,
}

#[derive(Debug, Clone)]
pub enum AppTrigger {
    Event {
        name: String,
        condition: Option<Expr>,
    },
    Cron(Box<Schedule>),
}

#[derive(Debug, Clone)]
pub struct ConcurrencySpec {
    pub limit: u32,
    pub key: Option<Expr>,
}

#[derive(Debug, Clone)]
pub struct ThrottleSpec {
    pub limit: u32,
    pub period: Duration,
    pub burst: u32,
    pub key: Option<Expr>,
}

/// Cancels a run when `event` arrives and matches it.
#[derive(Debug, Clone)]
pub struct CancelSpec {
    pub event: String,
    pub when: CancelWhen,
}

/// When an arriving event cancels a run.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelWhen {
    /// Its value at this path equals the run's event's value there (what
    /// `cancelOn: { event, match: "data.x" }` declares): matched through an index.
    Path(String),
    /// This CEL condition over `event` and `async` holds.
    Condition(String),
}

/// Why a registration was refused: every problem found, each naming its function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Refused(pub Vec<String>);

/// Settings the SDK may declare that paysteps does not carry out.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("rateLimit", "rate limiting"),
    ("debounce", "debounce"),
    ("batchEvents", "event batching"),
    ("priority", "priority"),
    ("timeouts", "timeouts"),
    ("singleton", "singleton"),
];

/// Fields of a function that carry no setting.
const DESCRIPTIVE: &[&str] = &["name", "id"];

impl Registration {
    /// Reads every function, or refuses the registration with every problem found. The
    /// function URLs must be on the origin of `app_url`, the URL paysteps was given.
    pub fn functions(&self, app_url: &Url) -> Result<Vec<AppFunction>, Refused> {
        let mut problems = Vec::new();
        let mut functions = Vec::new();
        for raw in &self.functions {
            match read_function(raw, app_url) {
                Ok(f) => functions.push(f),
                Err(mut found) => problems.append(&mut found),
            }
        }
        if problems.is_empty() {
            Ok(functions)
        } else {
            Err(Refused(problems))
        }
    }
}

fn read_function(raw: &RawFunction, app_url: &Url) -> Result<AppFunction, Vec<String>> {
    let mut problems = Vec::new();
    let mut refuse = |what: String| problems.push(format!("function '{}': {what}", raw.id));
    for key in raw.other.keys() {
        if DESCRIPTIVE.contains(&key.as_str()) || raw.other[key].is_null() {
            continue;
        }
        match UNSUPPORTED.iter().find(|(field, _)| field == key) {
            Some((field, what)) => refuse(format!("{what} ({field}) is not supported by paysteps")),
            None => refuse(format!("the setting '{key}' is not supported by paysteps")),
        }
    }
    let step = raw.steps.get("step").or_else(|| raw.steps.values().next());
    let url = match step.map(|s| Url::parse(&s.runtime.url)) {
        Some(Ok(url)) if url.origin() == app_url.origin() => Some(url),
        Some(Ok(url)) => {
            refuse(format!(
                "its URL {url} is not on the app's origin {}",
                app_url.origin().ascii_serialization()
            ));
            None
        }
        Some(Err(e)) => {
            refuse(format!("its URL is not a URL: {e}"));
            None
        }
        None => {
            refuse("it declares no step to call".into());
            None
        }
    };
    let retries = step
        .and_then(|s| s.retries.as_ref())
        .map_or(DEFAULT_RETRIES, |r| r.attempts);
    if retries > MAX_RETRIES {
        refuse(format!("{retries} retries is more than {MAX_RETRIES}"));
    }
    let mut triggers = Vec::new();
    for trigger in &raw.triggers {
        match read_trigger(trigger) {
            Ok(t) => triggers.push(t),
            Err(e) => refuse(e),
        }
    }
    let concurrency = match raw.concurrency.as_ref().map(read_concurrency) {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            refuse(e);
            None
        }
        None => None,
    };
    let throttle = match raw.throttle.as_ref().map(read_throttle) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            refuse(e);
            None
        }
        None => None,
    };
    let idempotency = match raw
        .idempotency
        .as_deref()
        .map(|s| key_expr(s, "idempotency"))
    {
        Some(Ok(e)) => Some(e),
        Some(Err(e)) => {
            refuse(e);
            None
        }
        None => None,
    };
    let mut cancel = Vec::new();
    let stripe_triggered = raw
        .triggers
        .iter()
        .any(|t| t.event.as_deref().is_some_and(|e| e.starts_with("stripe/")));
    for c in raw.cancel.iter().flatten() {
        match read_cancel(c, stripe_triggered) {
            Ok(spec) => cancel.push(spec),
            Err(e) => refuse(e),
        }
    }
    match url {
        Some(url) if problems.is_empty() => Ok(AppFunction {
            id: raw.id.clone(),
            url,
            triggers,
            retries,
            concurrency,
            throttle,
            idempotency,
            cancel,
        }),
        _ => Err(problems),
    }
}

fn read_trigger(raw: &RawTrigger) -> Result<AppTrigger, String> {
    match (&raw.event, &raw.cron) {
        (Some(name), None) => {
            let condition = raw
                .expression
                .as_deref()
                .map(|s| Expr::compile(s, &["event"]).map_err(|e| format!("trigger {name}: {e}")))
                .transpose()?;
            Ok(AppTrigger::Event {
                name: name.clone(),
                condition,
            })
        }
        (None, Some(cron)) => {
            if raw.jitter.is_some() {
                return Err(format!(
                    "cron '{cron}': jitter is not supported by paysteps"
                ));
            }
            let (tz, expr) = match cron
                .trim()
                .strip_prefix("TZ=")
                .or(cron.trim().strip_prefix("CRON_TZ="))
            {
                Some(rest) => match rest.split_once(' ') {
                    Some((tz, expr)) => (Some(tz), expr),
                    None => return Err(format!("cron '{cron}' names a time zone and no schedule")),
                },
                None => (None, cron.as_str()),
            };
            Schedule::parse(expr.trim(), tz)
                .map(|s| AppTrigger::Cron(Box::new(s)))
                .map_err(|e| format!("cron '{cron}': {e}"))
        }
        _ => Err("a trigger must name either an event or a cron schedule".into()),
    }
}

fn read_concurrency(raw: &Value) -> Result<Option<ConcurrencySpec>, String> {
    let one = |v: &Value| -> Result<ConcurrencySpec, String> {
        if let Some(limit) = v.as_u64() {
            return Ok(ConcurrencySpec {
                limit: limit as u32,
                key: None,
            });
        }
        let limit = v
            .get("limit")
            .and_then(Value::as_u64)
            .ok_or("concurrency needs a limit")?;
        match v.get("scope").and_then(Value::as_str) {
            None | Some("fn") => {}
            Some(scope) => {
                return Err(format!(
                    "concurrency scope '{scope}' is not supported by paysteps (only 'fn')"
                ));
            }
        }
        let key = v
            .get("key")
            .and_then(Value::as_str)
            .map(|k| key_expr(k, "concurrency key"))
            .transpose()?;
        Ok(ConcurrencySpec {
            limit: limit as u32,
            key,
        })
    };
    match raw {
        Value::Array(items) if items.len() > 1 => {
            Err("more than one concurrency limit is not supported by paysteps".into())
        }
        Value::Array(items) => items.first().map(one).transpose(),
        Value::Null => Ok(None),
        other => one(other).map(Some),
    }
    .map(|c| c.filter(|c| c.limit > 0))
}

fn read_throttle(raw: &RawThrottle) -> Result<ThrottleSpec, String> {
    let period = duration::parse(&raw.period).map_err(|e| format!("throttle period: {e}"))?;
    if raw.limit == 0 || period.is_zero() {
        return Err("a throttle needs a limit and a period above zero".into());
    }
    Ok(ThrottleSpec {
        limit: raw.limit,
        period,
        burst: raw.burst.unwrap_or(1).max(1),
        key: raw
            .key
            .as_deref()
            .map(|k| key_expr(k, "throttle key"))
            .transpose()?,
    })
}

/// A cancellation; a field equality goes through the listeners' index, except where a
/// Stripe event is involved: the index reads a Stripe event's fields from the Stripe
/// event itself, where the app reads them under `data`.
fn read_cancel(raw: &RawCancel, stripe_triggered: bool) -> Result<CancelSpec, String> {
    if raw.timeout.is_some() {
        return Err(format!(
            "cancelOn {}: a timeout is not supported by paysteps",
            raw.event
        ));
    }
    let Some(condition) = raw.condition.as_deref() else {
        return Err(format!(
            "cancelOn {}: a cancellation without a condition would cancel every run on any such event; paysteps needs `match` or `if`",
            raw.event
        ));
    };
    Expr::compile(condition, &["event", "async"])
        .map_err(|e| format!("cancelOn {}: {e}", raw.event))?;
    let indexed = !stripe_triggered && !raw.event.starts_with("stripe/");
    let when = match path_equality(condition) {
        Some((left, right)) if left == right && indexed => CancelWhen::Path(left),
        _ => CancelWhen::Condition(condition.to_owned()),
    };
    Ok(CancelSpec {
        event: raw.event.clone(),
        when,
    })
}

fn key_expr(source: &str, what: &str) -> Result<Expr, String> {
    Expr::compile(source, &["event"]).map_err(|e| format!("{what}: {e}"))
}

/// Reads `event.<path> == async.<path>` (either way round): the two paths, each without
/// its variable, e.g. `data.user_id`.
pub fn path_equality(source: &str) -> Option<(String, String)> {
    let (left, right) = source.split_once("==")?;
    let side = |s: &str| -> Option<(String, String)> {
        let s = s.trim();
        let (var, path) = s.split_once('.')?;
        let valid = path
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        (valid && matches!(var, "event" | "async")).then(|| (var.to_owned(), path.to_owned()))
    };
    let (a, b) = (side(left)?, side(right)?);
    match (a.0.as_str(), b.0.as_str()) {
        ("event", "async") => Some((a.1, b.1)),
        ("async", "event") => Some((b.1, a.1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn app_url() -> Url {
        Url::parse("http://127.0.0.1:3939/api/inngest").unwrap()
    }

    fn function(extra: Value) -> Value {
        let mut f = json!({
            "id": "e2e-app-flow", "name": "flow",
            "triggers": [{"event": "test/flow.started"}],
            "steps": {"step": {"id": "step", "name": "step",
                "runtime": {"type": "http", "url": "http://127.0.0.1:3939/api/inngest?fnId=e2e-app-flow&stepId=step"},
                "retries": {"attempts": 2}}}
        });
        f.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        f
    }

    fn read(functions: Vec<Value>) -> Result<Vec<AppFunction>, Refused> {
        let registration: Registration = serde_json::from_value(json!({
            "url": "http://127.0.0.1:3939/api/inngest", "app_id": "e2e-app",
            "sdk": "js:v4.24.0", "functions": functions
        }))
        .unwrap();
        registration.functions(&app_url())
    }

    #[test]
    fn a_function_with_triggers_retries_and_flow_control_is_read() {
        let functions = read(vec![function(json!({
            "triggers": [
                {"event": "test/flow.started", "expression": "event.data.plan == 'pro'"},
                {"cron": "TZ=Europe/Paris 0 9 * * 1"}
            ],
            "concurrency": [{"limit": 1, "key": "event.data.user"}],
            "throttle": {"limit": 10, "period": "1m", "key": "event.data.user"},
            "idempotency": "event.data.order",
            "cancel": [{"event": "test/flow.cancelled", "if": "event.data.user == async.data.user"}]
        }))])
        .unwrap();
        let f = &functions[0];
        assert_eq!((f.id.as_str(), f.retries), ("e2e-app-flow", 2));
        assert_eq!(f.url.query(), Some("fnId=e2e-app-flow&stepId=step"));
        assert!(
            matches!(&f.triggers[0], AppTrigger::Event { condition: Some(c), .. } if c.source() == "event.data.plan == 'pro'")
        );
        assert!(matches!(&f.triggers[1], AppTrigger::Cron(s) if s.time_zone() == "Europe/Paris"));
        assert_eq!(f.concurrency.as_ref().unwrap().limit, 1);
        assert_eq!(f.throttle.as_ref().unwrap().period, Duration::from_secs(60));
        assert_eq!(f.cancel[0].when, CancelWhen::Path("data.user".into()));
    }

    #[test]
    fn retries_default_to_four() {
        let mut f = function(json!({}));
        f["steps"]["step"]
            .as_object_mut()
            .unwrap()
            .remove("retries");
        assert_eq!(read(vec![f]).unwrap()[0].retries, DEFAULT_RETRIES);
    }

    #[test]
    fn unsupported_settings_are_refused_by_name() {
        let err = read(vec![
            function(json!({"debounce": {"period": "5s"}})),
            function(json!({"id": "e2e-app-other", "rateLimit": {"limit": 1, "period": "1h"}, "priority": {"run": "1"}})),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("function 'e2e-app-flow': debounce (debounce) is not supported"),
            "{text}"
        );
        assert!(
            text.contains("function 'e2e-app-other': rate limiting (rateLimit)"),
            "{text}"
        );
        assert!(text.contains("priority (priority)"), "{text}");
    }

    #[test]
    fn bad_expressions_cron_and_foreign_urls_are_refused() {
        let mut foreign = function(json!({}));
        foreign["steps"]["step"]["runtime"]["url"] = json!("http://169.254.169.254/latest");
        let cases = [
            (
                function(json!({"triggers": [{"event": "e", "expression": "event.data.x =="}]})),
                "not a CEL expression",
            ),
            (
                function(json!({"triggers": [{"cron": "61 * * * *"}]})),
                "cron '61 * * * *'",
            ),
            (
                function(json!({"concurrency": {"limit": 2, "scope": "account"}})),
                "scope 'account'",
            ),
            (
                function(json!({"cancel": [{"event": "x", "if": "async.data.a =="}]})),
                "cancelOn x",
            ),
            (
                function(json!({"cancel": [{"event": "x"}]})),
                "needs `match` or `if`",
            ),
            (foreign, "not on the app's origin"),
        ];
        for (f, expected) in cases {
            let text = read(vec![f]).unwrap_err().to_string();
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }

    #[test]
    fn cancellations_match_a_path_or_a_condition() {
        let f = read(vec![function(json!({"cancel": [
            {"event": "a", "if": "event.data.id == async.data.id"},
            {"event": "b", "if": "async.data.id == event.data.id && async.data.ok"}
        ]}))])
        .unwrap();
        assert_eq!(f[0].cancel[0].when, CancelWhen::Path("data.id".into()));
        assert_eq!(
            f[0].cancel[1].when,
            CancelWhen::Condition("async.data.id == event.data.id && async.data.ok".into())
        );
    }

    #[test]
    fn path_equalities_are_recognised_either_way_round() {
        assert_eq!(
            path_equality("event.data.user == async.data.user"),
            Some(("data.user".into(), "data.user".into()))
        );
        assert_eq!(
            path_equality(" async.data.id==event.data.user_id "),
            Some(("data.user_id".into(), "data.id".into()))
        );
        assert_eq!(path_equality("event.data.a == 'x'"), None);
        assert_eq!(path_equality("event.data.a == async.data.a && true"), None);
    }
}
