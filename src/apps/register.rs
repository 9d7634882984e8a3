//! An app's functions as engine functions: their triggers and conditions, their flow
//! control, and a handler that runs them in the app.

use std::sync::Arc;

use futures::FutureExt;
use serde_json::Value;

use super::client::AppClient;
use super::config::{AppFunction, AppTrigger, CancelWhen};
use super::driver::{self, RemoteFunction};
use super::events::{internal_name, to_sdk, to_sdk_parts};
use crate::engine::expr::Expr;
use crate::engine::{
    CancelOn, Concurrency, Event, ExprKeys, Flow, Function, Starter, Throttle, Trigger,
};

/// Engine functions for an app's functions, each run through `client`.
pub fn functions_of(client: &AppClient, functions: Vec<AppFunction>) -> Vec<Function> {
    functions
        .into_iter()
        .map(|f| function_of(client.clone(), f))
        .collect()
}

fn function_of(client: AppClient, f: AppFunction) -> Function {
    let remote = Arc::new(RemoteFunction {
        url: f.url.clone(),
        retries: f.retries,
    });
    let starters = f
        .triggers
        .into_iter()
        .map(|t| match t {
            AppTrigger::Event { name, condition } => Starter {
                trigger: Trigger::event(internal_name(&name)),
                condition_text: condition.as_ref().map(|c| c.source().to_owned()),
                condition: condition.map(condition_of),
            },
            AppTrigger::Cron(schedule) => Starter::new(Trigger::Cron(schedule)),
        })
        .collect();
    let keys = ExprKeys {
        concurrency: f.concurrency.as_ref().and_then(|c| c.key.clone()),
        throttle: f.throttle.as_ref().and_then(|t| t.key.clone()),
        idempotency: f.idempotency,
        shape: to_sdk_parts_of,
    };
    // A function without key expressions keeps a plain flow: its events are not read
    // for keys it does not have.
    let has_keys =
        keys.concurrency.is_some() || keys.throttle.is_some() || keys.idempotency.is_some();
    let exprs = has_keys.then(|| Arc::new(keys));
    let flow = Flow {
        concurrency: f.concurrency.as_ref().map(|c| Concurrency {
            limit: c.limit,
            key: None,
        }),
        throttle: f.throttle.as_ref().map(|t| Throttle {
            limit: t.limit,
            period: t.period,
            burst: t.burst,
            key: None,
        }),
        idempotency: None,
        cancel_on: f
            .cancel
            .iter()
            .filter_map(|c| match &c.when {
                CancelWhen::Path(path) => Some(CancelOn {
                    event: internal_name(&c.event).to_owned(),
                    matching: path.clone(),
                }),
                CancelWhen::Condition(_) => None,
            })
            .collect(),
        cancel_when: f
            .cancel
            .iter()
            .filter_map(|c| match &c.when {
                CancelWhen::Condition(condition) => {
                    Some((internal_name(&c.event).to_owned(), condition.clone()))
                }
                CancelWhen::Path(_) => None,
            })
            .collect(),
        exprs,
    };
    Function::remote(
        f.id,
        starters,
        f.retries,
        flow,
        Arc::new(move |ctx| driver::execute(client.clone(), remote.clone(), ctx).boxed()),
    )
}

/// Whether an event starts the function: its trigger's expression over the event as
/// the app sees it.
fn condition_of(expr: Expr) -> Arc<dyn Fn(&Event) -> bool + Send + Sync> {
    Arc::new(move |event: &Event| expr.matches(&[("event", &to_sdk(event))]))
}

/// The event an expression key reads, from the event's name and payload.
fn to_sdk_parts_of(name: &str, payload: &Value) -> Value {
    to_sdk_parts("", name, payload, 0)
}
