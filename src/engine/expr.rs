//! The CEL expressions SDK apps write in trigger conditions, `if` clauses of waits and
//! cancellations, and concurrency, throttle and idempotency keys: `event.data.user_id`,
//! `event.data.plan == 'pro' && event.data.amount > 100`, `async.data.id == event.data.id`.
//!
//! Each is compiled when the app syncs, so a malformed one is refused there with its
//! reason, and evaluated over the events in play. An expression that cannot be evaluated
//! for an event (a missing field, a type mismatch) does not match it.

use std::fmt;
use std::sync::Arc;

use cel::{Context, Program, Value};

/// An event as expressions read it: `{name, data}`, `data` being its payload (a Stripe
/// event's payload is the Stripe event itself), as SDK functions see their events.
pub fn view(name: &str, payload: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "name": name, "data": payload })
}

/// A compiled expression and its source.
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<Program>,
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadExpr {
    /// It does not parse as CEL.
    #[error("'{expr}' is not a CEL expression: {reason}")]
    Syntax {
        /// The expression as written.
        expr: String,
        /// The parser's message.
        reason: String,
    },
    /// It reads a variable that is not in scope where it is used.
    #[error("'{expr}' reads '{variable}'; only {allowed} can be read here")]
    Variable {
        /// The expression as written.
        expr: String,
        /// The variable it reads.
        variable: String,
        /// The variables it may read.
        allowed: String,
    },
}

impl Expr {
    /// Compiles `source`, which may read only the variables in `allowed` (`event`, and
    /// `async` for the candidate event of a wait or cancellation).
    pub fn compile(source: &str, allowed: &[&str]) -> Result<Expr, BadExpr> {
        let program = Program::compile(source).map_err(|e| BadExpr::Syntax {
            expr: source.to_owned(),
            reason: e.to_string().lines().next().unwrap_or_default().to_owned(),
        })?;
        let references = program.references();
        let mut variables = references.variables();
        variables.sort_unstable();
        if let Some(variable) = variables.iter().find(|v| !allowed.contains(v)) {
            return Err(BadExpr::Variable {
                expr: source.to_owned(),
                variable: (*variable).to_owned(),
                allowed: allowed.join(" and "),
            });
        }
        Ok(Expr {
            source: source.to_owned(),
            program: Arc::new(program),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression is `true` for these variables.
    pub fn matches(&self, vars: &[(&str, &serde_json::Value)]) -> bool {
        matches!(self.evaluate(vars), Some(Value::Bool(true)))
    }

    /// The expression's value as a key: a string as it is, anything else as JSON text.
    /// `None` when it cannot be evaluated or is null.
    pub fn key(&self, vars: &[(&str, &serde_json::Value)]) -> Option<String> {
        match self.evaluate(vars)? {
            Value::Null => None,
            Value::String(s) => Some(s.to_string()),
            Value::Int(n) => Some(n.to_string()),
            Value::UInt(n) => Some(n.to_string()),
            Value::Float(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => other.json().ok().map(|v| serde_json::Value::to_string(&v)),
        }
    }

    fn evaluate(&self, vars: &[(&str, &serde_json::Value)]) -> Option<Value> {
        let mut context = Context::default();
        for (name, value) in vars {
            context.add_variable_from_value(*name, cel::to_value(value).ok()?);
        }
        self.program.execute(&context).ok()
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({})", self.source())
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> serde_json::Value {
        json!({"name": "app/order.paid", "data": {"user": "u_1", "plan": "pro", "amount": 150, "ratio": 0.5}})
    }

    #[test]
    fn what_real_apps_write_evaluates() {
        let event = event();
        let candidate = json!({"data": {"user": "u_1", "by": "ops"}});
        let vars = [("event", &event), ("async", &candidate)];
        let cases = [
            ("event.data.plan == 'pro'", true),
            ("event.data.plan != \"pro\"", false),
            ("event.data.plan == 'pro' && event.data.amount > 100", true),
            (
                "event.data.plan == 'free' || event.data.amount >= 150",
                true,
            ),
            ("async.data.user == event.data.user", true),
            ("event.data.user + '-' + event.data.plan == 'u_1-pro'", true),
            ("event.data.amount == 150", true),
            ("event.data.ratio < 1.0", true),
            ("event.data.missing == 'x'", false),
            ("event.name == 'app/order.paid'", true),
        ];
        for (source, expected) in cases {
            let expr = Expr::compile(source, &["event", "async"]).unwrap();
            assert_eq!(expr.matches(&vars), expected, "{source}");
        }
    }

    #[test]
    fn keys_read_as_text() {
        let event = event();
        let vars = [("event", &event)];
        let key = |s: &str| Expr::compile(s, &["event"]).unwrap().key(&vars);
        assert_eq!(key("event.data.user").as_deref(), Some("u_1"));
        assert_eq!(key("event.data.amount").as_deref(), Some("150"));
        assert_eq!(
            key("event.data.user + ':' + event.data.plan").as_deref(),
            Some("u_1:pro")
        );
        assert_eq!(key("event.data.missing"), None);
    }

    #[test]
    fn malformed_expressions_and_out_of_scope_variables_are_refused() {
        assert!(matches!(
            Expr::compile("event.data.plan ==", &["event"]),
            Err(BadExpr::Syntax { .. })
        ));
        let err = Expr::compile("async.data.id == event.data.id", &["event"]).unwrap_err();
        assert!(matches!(&err, BadExpr::Variable { variable, .. } if variable == "async"));
        assert!(
            err.to_string().contains("only event can be read here"),
            "{err}"
        );
    }
}
