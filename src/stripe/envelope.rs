//! The few envelope fields ingest needs, read without typing `data.object`, so event types
//! paysteps has no function for (or that async-stripe does not know yet) are still accepted.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

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

/// Reads the envelope. The rest of the body is checked to be JSON but not kept: a
/// Stripe object is kilobytes of fields that only the functions' own parse reads.
pub fn parse(body: &[u8]) -> Result<Envelope> {
    let body: Shape<'_, Body<'_>> =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
    let event = match body {
        Shape::Object(event) => event,
        Shape::Value(other) => {
            return Err(EnvelopeError::InvalidJson(format!(
                "expected an object, got {}",
                other.kind()
            )));
        }
    };
    read(event).map_err(|what| EnvelopeError::InvalidEvent(what.to_owned()))
}

/// The top level of an event, as far as ingest reads it.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    object: Leaf<'a>,
    #[serde(borrow, default)]
    id: Leaf<'a>,
    #[serde(borrow, default, rename = "type")]
    event_type: Leaf<'a>,
    #[serde(borrow, default)]
    created: Leaf<'a>,
    #[serde(borrow, default)]
    livemode: Leaf<'a>,
    #[serde(borrow, default)]
    data: Shape<'a, Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, default)]
    object: Shape<'a, Object<'a>>,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow, default)]
    id: Leaf<'a>,
    #[serde(borrow, default)]
    customer: Shape<'a, Expanded<'a>>,
}

/// An expanded object in place of its id.
#[derive(Deserialize)]
struct Expanded<'a> {
    #[serde(borrow, default)]
    id: Leaf<'a>,
}

/// A JSON value whose own fields are not read.
type Leaf<'a> = Shape<'a, IgnoredAny>;

/// A JSON value as the envelope sees it: an object read as `T`, or another value.
/// Any JSON is accepted, so a field of the wrong kind is the envelope's error to name
/// rather than the parser's.
enum Shape<'a, T> {
    Object(T),
    Value(Scalar<'a>),
}

/// A JSON value other than an object; arrays and fractions are only named.
enum Scalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Other(&'static str),
}

impl<T> Default for Shape<'_, T> {
    fn default() -> Self {
        Shape::Value(Scalar::Null)
    }
}

impl<T> Shape<'_, T> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Shape::Value(Scalar::Str(text)) => Some(text),
            _ => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Shape::Value(Scalar::Int(n)) => Some(*n),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Shape::Value(Scalar::Bool(b)) => Some(*b),
            _ => None,
        }
    }
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Str(_) => "a string",
            Scalar::Int(_) => "a number",
            Scalar::Bool(_) => "a boolean",
            Scalar::Other(kind) => kind,
        }
    }
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Shape<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor(PhantomData))
    }
}

struct ShapeVisitor<'a, T>(PhantomData<(&'a (), T)>);

impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for ShapeVisitor<'a, T> {
    type Value = Shape<'a, T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> std::result::Result<Self::Value, M::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Shape::Object)
    }

    fn visit_seq<S: SeqAccess<'de>>(
        self,
        mut seq: S,
    ) -> std::result::Result<Self::Value, S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Value(Scalar::Other("an array")))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(Shape::Value(Scalar::Str(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(Shape::Value(Scalar::Str(Cow::Owned(v.to_owned()))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        Ok(Shape::Value(Scalar::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        Ok(Shape::Value(
            i64::try_from(v).map_or(Scalar::Other("a number"), Scalar::Int),
        ))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(Shape::Value(Scalar::Other("a number")))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
        Ok(Shape::Value(Scalar::Bool(v)))
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Shape::Value(Scalar::Null))
    }
}

const NO_DATA_OBJECT: &str = "\"data.object\" is missing or not an object";

fn read(event: Body<'_>) -> std::result::Result<Envelope, &'static str> {
    if event.object.as_str() != Some("event") {
        return Err("\"object\" is not \"event\"");
    }
    let id = event
        .id
        .as_str()
        .filter(|id| id.len() > "evt_".len() && id.starts_with("evt_") && plain(id))
        .ok_or("\"id\" is missing or is not an evt_ id")?;
    if id.len() > MAX_ID_BYTES {
        return Err("\"id\" is longer than 255 bytes");
    }
    let event_type = event
        .event_type
        .as_str()
        .filter(|t| !t.is_empty() && t.len() <= MAX_ID_BYTES && plain(t))
        .ok_or("\"type\" is missing, empty, longer than 255 bytes or has control characters")?;
    let created = event
        .created
        .as_i64()
        .ok_or("\"created\" is missing or not an integer")?;
    let Shape::Object(data) = &event.data else {
        return Err(NO_DATA_OBJECT);
    };
    let Shape::Object(object) = &data.object else {
        return Err(NO_DATA_OBJECT);
    };
    let customer = match &object.customer {
        Shape::Object(expanded) => expanded.id.as_str(),
        other => other.as_str(),
    };
    let object_id = object.id.as_str();
    if !object_id.is_none_or(plain) || !customer.is_none_or(plain) {
        return Err("\"data.object\" has an id with control characters");
    }
    if !object_id.is_none_or(short) || !customer.is_none_or(short) {
        return Err("\"data.object\" has an id longer than 255 bytes");
    }
    Ok(Envelope {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        created,
        livemode: event.livemode.as_bool().unwrap_or(false),
        object_id: object_id.map(str::to_owned),
        customer: customer.map(str::to_owned),
    })
}

/// Ids and types are stored, indexed and shown as they are: no control characters.
fn plain(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// The longest id or type accepted, in bytes. Stripe's are a few dozen; an index entry
/// has a size limit (about 2.7 kB on PostgreSQL), and an id past it would fail the
/// insert with a 500 that Stripe retries for days.
const MAX_ID_BYTES: usize = 255;

fn short(text: &str) -> bool {
    text.len() <= MAX_ID_BYTES
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
mod proptests;

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

    fn parse_value(value: &Value) -> Result<Envelope> {
        parse(value.to_string().as_bytes())
    }

    fn rejection(value: &Value) -> (&'static str, String) {
        let err = parse_value(value).unwrap_err();
        (err.code(), err.to_string())
    }

    #[test]
    fn unknown_event_type_is_accepted() {
        let envelope = parse_value(&event()).unwrap();
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
    }

    #[test]
    fn optional_fields_are_tolerated() {
        let mut value = event();
        value["data"]["object"]["customer"] = json!({ "id": "cus_2", "object": "customer" });
        assert_eq!(
            parse_value(&value).unwrap().customer.as_deref(),
            Some("cus_2")
        );

        value["data"]["object"] = json!({});
        value.as_object_mut().unwrap().remove("livemode");
        let envelope = parse_value(&value).unwrap();
        assert_eq!(
            (envelope.object_id, envelope.customer, envelope.livemode),
            (None, None, false)
        );

        value["data"]["object"] = json!({ "id": 7, "customer": null });
        let envelope = parse_value(&value).unwrap();
        assert_eq!((envelope.object_id, envelope.customer), (None, None));
    }

    #[test]
    fn escaped_strings_and_unread_fields_are_json_like_any_other() {
        let body = br#"{"object":"event","id":"evt_\u0031","type":"a.b","created":1,
            "extra":[1,{"x":[]}],"data":{"object":{"id":"o\/1","lines":[1.5,true],
            "customer":{"id":"cus_1","nested":{"a":[null]}}}}}"#;
        let envelope = parse(body).unwrap();
        assert_eq!(
            (
                envelope.id.as_str(),
                envelope.object_id.as_deref(),
                envelope.customer.as_deref()
            ),
            ("evt_1", Some("o/1"), Some("cus_1"))
        );

        let trailing =
            br#"{"object":"event","id":"evt_1","type":"a","created":1,"data":{"object":{}}} x"#;
        assert_eq!(parse(trailing).unwrap_err().code(), "invalid_json");
        let unclosed = br#"{"object":"event","id":"evt_1","type":"a","created":1,"data":{"object":{"lines":[}}}"#;
        assert_eq!(parse(unclosed).unwrap_err().code(), "invalid_json");
        let huge = br#"{"object":"event","id":"evt_1","type":"a","created":18446744073709551615,"data":{"object":{}}}"#;
        assert_eq!(parse(huge).unwrap_err().code(), "invalid_event");
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
        let long = format!("evt_{}", "a".repeat(252));
        let cases: [(&str, Value, &str); 21] = [
            ("id", json!(long), "\"id\" is longer than 255 bytes"),
            (
                "id",
                json!(format!("evt_{}", "a".repeat(10_000))),
                "255 bytes",
            ),
            ("type", json!("a".repeat(256)), "\"type\""),
            (
                "data",
                json!({ "object": { "id": "x".repeat(256) } }),
                "\"data.object\" has an id longer",
            ),
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
    fn ids_of_255_bytes_are_accepted() {
        let mut value = event();
        let id = format!("evt_{}", "a".repeat(251));
        value["id"] = json!(id);
        value["type"] = json!("t".repeat(255));
        value["data"]["object"]["customer"] = json!("c".repeat(255));
        let envelope = parse_value(&value).unwrap();
        assert_eq!((envelope.id.len(), envelope.event_type.len()), (255, 255));
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
            let body = std::fs::read(&path).unwrap();
            let envelope = parse(&body).unwrap();
            let value: Value = serde_json::from_slice(&body).unwrap();
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert!(stem.starts_with(&envelope.event_type), "{stem}");
            assert_eq!(value["id"], envelope.id.as_str());
            let customer = &value["data"]["object"]["customer"];
            assert_eq!(envelope.customer.as_deref(), customer.as_str(), "{stem}");
            // An upcoming invoice is not made yet: it has no id.
            let upcoming = envelope.event_type == "invoice.upcoming";
            assert_eq!(envelope.object_id.is_some(), !upcoming, "{stem}");
            assert!(!envelope.livemode, "{stem}");
            seen += 1;
        }
        assert!(seen >= 12, "only {seen} fixtures found");
    }
}
