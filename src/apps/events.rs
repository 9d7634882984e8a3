//! paysteps' events as an SDK function sees them, and back.
//!
//! An SDK function receives `{id, name, data, ts, user}`. paysteps' own internal events
//! carry Inngest's names and shapes there: a failure handler is triggered by
//! `inngest/function.failed` whose `data.error` is `{name, message}`, an invoked function
//! by `inngest/function.invoked`, a cron tick is `inngest/scheduled.timer`. A Stripe
//! event is `stripe/<type>` with the whole Stripe event as its `data`.

use serde_json::{Value, json};

use super::protocol::{sdk_error, sdk_event};
use crate::engine::{CRON_TICK, Event, FUNCTION_FAILED, FUNCTION_INVOKED};

/// The name SDK apps know paysteps' failure event by.
pub const INNGEST_FUNCTION_FAILED: &str = "inngest/function.failed";
const INNGEST_FUNCTION_INVOKED: &str = "inngest/function.invoked";
const INNGEST_SCHEDULED_TIMER: &str = "inngest/scheduled.timer";

/// The event as an SDK function receives it.
pub fn to_sdk(event: &Event) -> Value {
    to_sdk_parts(event.id.as_str(), &event.name, &event.data, event.ts)
}

/// [`to_sdk`] from an event's parts.
pub fn to_sdk_parts(id: &str, name: &str, data: &Value, ts: i64) -> Value {
    match name {
        FUNCTION_FAILED => {
            let mut data = data.clone();
            if let Some(error) = data.get("error").and_then(Value::as_str) {
                data["error"] = error_object(error);
            }
            if let Some(original) = data.get("event").cloned()
                && let Ok(original) = serde_json::from_value::<Event>(original)
            {
                data["event"] = to_sdk(&original);
            }
            sdk_event(id, INNGEST_FUNCTION_FAILED, &data, ts)
        }
        FUNCTION_INVOKED => sdk_event(id, INNGEST_FUNCTION_INVOKED, data, ts),
        CRON_TICK => {
            let data = json!({
                "cron": data.get("cron").cloned().unwrap_or(Value::Null),
                "scheduledAt": data.get("tick").cloned().unwrap_or(Value::Null),
                "fireAt": data.get("tick").cloned().unwrap_or(Value::Null),
            });
            sdk_event(id, INNGEST_SCHEDULED_TIMER, &data, ts)
        }
        _ => sdk_event(id, name, data, ts),
    }
}

/// A run's error text as the SDK's error object: `NonRetriableError: declined` is read
/// back as that name and message (the form [`super::driver`] writes them in).
fn error_object(text: &str) -> Value {
    match text.split_once(": ") {
        Some((name, message))
            if name.ends_with("Error") && name.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            sdk_error(name, message)
        }
        _ => sdk_error("Error", text),
    }
}

/// The name paysteps stores a trigger's event under: Inngest's internal names map to
/// paysteps' own.
pub fn internal_name(sdk_name: &str) -> &str {
    match sdk_name {
        INNGEST_FUNCTION_FAILED => FUNCTION_FAILED,
        INNGEST_FUNCTION_INVOKED => FUNCTION_INVOKED,
        INNGEST_SCHEDULED_TIMER => CRON_TICK,
        other => other,
    }
}
