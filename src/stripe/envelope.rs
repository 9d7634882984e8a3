//! The few envelope fields ingest needs, read without typing `data.object`, so event types
//! paysteps has no function for (or that async-stripe does not know yet) are still accepted.

use serde_json::{Map, Value};

/// The result of reading an envelope.
pub type Result<T, E = EnvelopeError> = std::result::Result<T, E>;

/// Why a webhook body was refused before anything was stored.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON; holds the parser's reason.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The JSON is not a Stripe event (no `id`, `type`, `created`…); says what is missing.
    #[error("not a Stripe event: {0}")]
    InvalidEvent(String),
}

impl EnvelopeError {
    /// The API error code: `invalid_json` or `invalid_event`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidEvent(_) => "invalid_event",
        }
    }
}

/// The fields of a Stripe event envelope that ingest reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Stripe's event id (`evt_…`), the deduplication key.
    pub id: String,
    /// e.g. `checkout.session.completed`.
    pub event_type: String,
    /// When Stripe created the event (unix seconds); orders writes to the same object.
    pub created: i64,
    /// Whether the event comes from live mode rather than test mode.
    pub livemode: bool,
    /// `data.object.id`.
    pub object_id: Option<String>,
    /// `data.object.customer`, whether a plain id or an expanded customer.
    pub customer: Option<String>,
}

/// Reads the envelope and returns it with the whole parsed body, so the body is parsed once.
pub fn parse(body: &[u8]) -> Result<(Envelope, Value)> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
    let event = value.as_object().ok_or_else(|| {
        EnvelopeError::InvalidJson(format!("expected an object, got {}", kind(&value)))
    })?;
    let envelope = read(event).map_err(|what| EnvelopeError::InvalidEvent(what.to_owned()))?;
    Ok((envelope, value))
}

fn read(event: &Map<String, Value>) -> std::result::Result<Envelope, &'static str> {
    if event.get("object").and_then(Value::as_str) != Some("event") {
        return Err("\"object\" is not \"event\"");
    }
    let id = event
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| id.len() > "evt_".len() && id.starts_with("evt_") && plain(id))
        .ok_or("\"id\" is missing or is not an evt_ id")?;
    let event_type = event
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && plain(t))
        .ok_or("\"type\" is missing, empty or has control characters")?;
    let created = event
        .get("created")
        .and_then(Value::as_i64)
        .ok_or("\"created\" is missing or not an integer")?;
    let object = event
        .get("data")
        .and_then(|data| data.get("object"))
        .and_then(Value::as_object)
        .ok_or("\"data.object\" is missing or not an object")?;

    let customer = match object.get("customer") {
        Some(Value::Object(expanded)) => expanded.get("id"),
        other => other,
    };
    let object_id = object.get("id").and_then(Value::as_str);
    let customer = customer.and_then(Value::as_str);
    if !object_id.is_none_or(plain) || !customer.is_none_or(plain) {
        return Err("\"data.object\" has an id with control characters");
    }
    Ok(Envelope {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        created,
        livemode: event
            .get("livemode")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        object_id: object_id.map(str::to_owned),
        customer: customer.map(str::to_owned),
    })
}

/// Ids and types are stored, indexed and shown as they are: no control characters.
fn plain(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// "an array", "a string", …: what a JSON value is, for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn event() -> Value {
        json!({
            "id": "evt_1",
            "object": "event",
            "type": "some.future_type",
            "created": 1_790_848_807,
            "livemode": true,
            "data": { "object": { "id": "obj_1", "object": "thing", "customer": "cus_1" } }
        })
    }

    fn parse_value(value: &Value) -> Result<(Envelope, Value)> {
        parse(value.to_string().as_bytes())
    }

    fn rejection(value: &Value) -> (&'static str, String) {
        let err = parse_value(value).unwrap_err();
        (err.code(), err.to_string())
    }

    #[test]
    fn unknown_event_type_is_accepted() {
        let (envelope, value) = parse_value(&event()).unwrap();
        assert_eq!(
            envelope,
            Envelope {
                id: "evt_1".into(),
                event_type: "some.future_type".into(),
                created: 1_790_848_807,
                livemode: true,
                object_id: Some("obj_1".into()),
                customer: Some("cus_1".into()),
            }
        );
        assert_eq!(value, event());
    }

    #[test]
    fn optional_fields_are_tolerated() {
        let mut value = event();
        value["data"]["object"]["customer"] = json!({ "id": "cus_2", "object": "customer" });
        assert_eq!(
            parse_value(&value).unwrap().0.customer.as_deref(),
            Some("cus_2")
        );

        value["data"]["object"] = json!({});
        value.as_object_mut().unwrap().remove("livemode");
        let (envelope, _) = parse_value(&value).unwrap();
        assert_eq!(
            (envelope.object_id, envelope.customer, envelope.livemode),
            (None, None, false)
        );

        value["data"]["object"] = json!({ "id": 7, "customer": null });
        let (envelope, _) = parse_value(&value).unwrap();
        assert_eq!((envelope.object_id, envelope.customer), (None, None));
    }

    #[test]
    fn non_json_bodies_are_invalid_json() {
        for body in [
            &b""[..],
            b"not json",
            b"{\"id\":",
            b"[]",
            b"\"evt_1\"",
            b"null",
            b"\xff",
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.code(), "invalid_json", "{body:?}");
        }
        assert_eq!(
            parse(b"[1]").unwrap_err().to_string(),
            "invalid JSON body: expected an object, got an array"
        );
    }

    #[test]
    fn each_missing_or_wrong_field_is_an_invalid_event() {
        let cases: [(&str, Value, &str); 17] = [
            ("object", Value::Null, "\"object\""),
            ("object", json!("customer"), "\"object\""),
            ("id", Value::Null, "\"id\""),
            ("id", json!(42), "\"id\""),
            ("id", json!("ch_1"), "\"id\""),
            ("id", json!("evt_"), "\"id\""),
            ("type", Value::Null, "\"type\""),
            ("type", json!(""), "\"type\""),
            ("id", json!("evt_1\u{0}"), "\"id\""),
            ("type", json!("invoice\npaid"), "\"type\""),
            (
                "data",
                json!({ "object": { "id": "pi_\u{0}" } }),
                "\"data.object\"",
            ),
            (
                "data",
                json!({ "object": { "customer": { "id": "cus_\u{7}" } } }),
                "\"data.object\"",
            ),
            ("created", Value::Null, "\"created\""),
            ("created", json!("1790848807"), "\"created\""),
            ("created", json!(1.5), "\"created\""),
            ("data", json!({}), "\"data.object\""),
            ("data", json!({ "object": "obj_1" }), "\"data.object\""),
        ];
        for (field, replacement, named) in cases {
            let mut value = event();
            if replacement.is_null() {
                value.as_object_mut().unwrap().remove(field);
            } else {
                value[field] = replacement;
            }
            let (code, message) = rejection(&value);
            assert_eq!(code, "invalid_event", "{value}");
            assert!(message.contains(named), "{message}");
        }
    }

    #[test]
    fn every_fixture_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let (envelope, value) = parse(&std::fs::read(&path).unwrap()).unwrap();
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert!(stem.starts_with(&envelope.event_type), "{stem}");
            assert_eq!(value["id"], envelope.id.as_str());
            assert_eq!(envelope.customer.as_deref(), Some("cus_QXg1o8vcGmoR32"));
            assert!(envelope.object_id.is_some() && !envelope.livemode);
            seen += 1;
        }
        assert!(seen >= 12, "only {seen} fixtures found");
    }
}
