//! Field paths into an event, as flow control keys and event matches use them.
//!
//! A path is dotted, e.g. `data.object.customer`, and may start with `event.`. It is read
//! against the event as its sender sees it: a Stripe event's payload is itself a Stripe
//! Event object (`id`, `type`, `data.object`, …), so `data.object.customer` names the
//! customer; any other event is `{ "name", "id", "ts", "data": <payload> }`, so
//! `data.receipt_id` names a field its sender put in `data`.

use serde_json::Value;

/// The value at `path` in an event, or `None` when the event has nothing there (or null).
pub fn lookup(name: &str, payload: &Value, path: &str) -> Option<Value> {
    let path = path.strip_prefix("event.").unwrap_or(path);
    let mut parts = path.split('.').filter(|p| !p.is_empty());
    let value = if name.starts_with("stripe/") {
        walk(Some(payload), parts)
    } else {
        match parts.next()? {
            "data" => walk(Some(payload), parts),
            "name" => return Some(Value::String(name.to_owned())),
            _ => None,
        }
    };
    value.filter(|v| !v.is_null()).cloned()
}

/// A value as a key: strings as they are, anything else as its JSON text.
pub fn key_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn walk<'v, 'p>(
    mut at: Option<&'v Value>,
    parts: impl Iterator<Item = &'p str>,
) -> Option<&'v Value> {
    for part in parts {
        at = match at? {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
    }
    at
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stripe_paths_read_the_envelope() {
        let envelope = json!({"id": "evt_1", "data": {"object": {"customer": "cus_9", "items": [{"id": "si_1"}]}}});
        let at = |p| lookup("stripe/invoice.paid", &envelope, p);
        assert_eq!(at("data.object.customer"), Some(json!("cus_9")));
        assert_eq!(at("event.data.object.customer"), Some(json!("cus_9")));
        assert_eq!(at("data.object.items.0.id"), Some(json!("si_1")));
        assert_eq!(at("id"), Some(json!("evt_1")));
        assert_eq!(at("data.object.missing"), None);
    }

    #[test]
    fn application_paths_read_data() {
        let data = json!({"receipt_id": 42, "none": null});
        let at = |p| lookup("app/receipt.opened", &data, p);
        assert_eq!(at("data.receipt_id"), Some(json!(42)));
        assert_eq!(at("event.data.receipt_id"), Some(json!(42)));
        assert_eq!(at("data.none"), None);
        assert_eq!(at("receipt_id"), None);
        assert_eq!(at("name"), Some(json!("app/receipt.opened")));
    }

    #[test]
    fn keys_keep_strings_bare() {
        assert_eq!(key_text(&json!("cus_1")), "cus_1");
        assert_eq!(key_text(&json!(42)), "42");
    }
}
