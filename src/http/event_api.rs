//! `POST /e/{event_key}`: an application's own events, in the wire format of Inngest's
//! event API, so its SDKs (and anything written for them) can send here unchanged.
//!
//! The SDK reads the answer's body, never its HTTP status: it takes a send as done only
//! when the body says `"status": 200` and has no `error`. So every answer carries its
//! status in the body too, and `error` is the message *string* the SDK expects; our
//! machine-readable code, which other routes nest as `{"error":{"code","message"}}`, sits
//! beside it as `code`:
//! - `200 {"ids":[…],"status":200}`, one paysteps event id per event, in request order;
//! - `4xx/5xx {"ids":[…],"status":…,"error":"<message>","code":"<code>"}`;
//! - `401 {"status":401,"error":"Event key not found","code":"event_key_not_found"}`.
//!
//! Inngest derives its event ids from the `x-inngest-event-id-seed` header; paysteps
//! ignores it and answers its own ids. Only an `id` set by the sender makes a resend
//! (or an SDK retry) a duplicate.

use std::cell::Cell;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;
use crate::config::{Secret, parse_secrets};
use crate::engine::EventInput;
use crate::ids::EventId;
use crate::store::IngestOutcome;
use crate::stripe::envelope::kind;

/// Largest request body, as Inngest's event API: 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Most events in one request.
pub const MAX_EVENTS: usize = 5_000;
/// Largest event, as its JSON text: 512 KiB.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// Longest `name` and `id`, in bytes (both are indexed).
pub const MAX_NAME_BYTES: usize = 512;
/// How long a sender's `id` makes a second event with that id a duplicate.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Names only paysteps itself may give an event: Stripe events come from a verified
/// webhook, `paysteps/…` ones from the engine.
const RESERVED_PREFIXES: [&str; 2] = ["stripe/", "paysteps/"];

/// Which keys `POST /e/{event_key}` accepts.
#[derive(Debug, Clone)]
pub enum EventKeys {
    /// Any key (`dev`, as a local Inngest dev server does).
    Any,
    /// Only these (`serve`); an empty list refuses every key.
    Only(Vec<Secret>),
}

impl EventKeys {
    /// The keys of a comma-separated list, as `PAYSTEPS_EVENT_KEY` holds them.
    pub fn only(list: &str) -> EventKeys {
        EventKeys::Only(parse_secrets(list))
    }

    /// Whether `key` may send events (compared in constant time).
    pub fn accepts(&self, key: &str) -> bool {
        match self {
            EventKeys::Any => true,
            // Every configured key is compared, each in constant time.
            EventKeys::Only(keys) => keys.iter().fold(false, |found, known| {
                found | bool::from(known.expose().as_bytes().ct_eq(key.as_bytes()))
            }),
        }
    }
}

/// A request's URI as logged: the event key in `/e/{event_key}` is a credential.
pub(crate) fn loggable_uri(uri: &Uri) -> String {
    if uri.path().starts_with("/e/") {
        "/e/[redacted]".to_owned()
    } else {
        uri.to_string()
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/e/{event_key}",
        post(receive).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// A refusal, answered in the SDK's shape. A batch is stored whole or not at all, so a
/// refusal never has ids.
struct Refusal {
    error: ApiError,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal { error }
    }
}

async fn receive(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    match accept(&state, key, request).await {
        Ok(ids) => Json(json!({ "ids": ids, "status": 200 })).into_response(),
        Err(refusal) => {
            if refusal.error.status.is_client_error() {
                state.engine.metrics().rejected(refusal.error.code);
            }
            refusal.into_response()
        }
    }
}

async fn accept(
    state: &AppState,
    key: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Vec<EventId>, Refusal> {
    // The key is checked before a byte of the body is read: a sender without one costs
    // neither the time nor the memory of its body.
    let known = match &key {
        Ok(Path(key)) => state.event_keys.accepts(key),
        // A key that does not even decode cannot be a configured one.
        Err(_) => matches!(state.event_keys, EventKeys::Any),
    };
    if !known {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "event_key_not_found",
            "Event key not found",
        )
        .into());
    }
    let body = Bytes::from_request(request, state)
        .await
        .map_err(ApiError::from)?;
    // The whole batch is checked before anything is stored.
    let events = parse_batch(&body)?;
    drop(body);
    let count = events.len();
    let outcomes = match <[EventInput; 1]>::try_from(events) {
        // One event takes the engine's quickest way in.
        Ok([event]) => vec![state.engine.ingest(event).await.map_err(ApiError::from)?],
        Err(events) => state
            .engine
            .ingest_batch(events)
            .await
            .map_err(ApiError::from)?,
    };
    let mut ids = Vec::with_capacity(count);
    let mut runs = 0;
    for outcome in outcomes {
        match outcome {
            IngestOutcome::Accepted {
                event_id,
                runs: started,
            } => {
                runs += started.len();
                ids.push(event_id);
            }
            IngestOutcome::Duplicate { event_id } => ids.push(event_id),
        }
    }
    tracing::info!(events = count, runs, "api events accepted");
    Ok(ids)
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let error = self.error.logged();
        let status = error.status.as_u16();
        let mut body = if error.status == StatusCode::UNAUTHORIZED {
            // As Inngest answers an unknown key: no ids.
            json!({ "status": status, "error": error.message, "code": error.code })
        } else {
            json!({ "ids": [], "status": status, "error": error.message, "code": error.code })
        };
        if let Some(request_id) = &error.request_id {
            body["request_id"] = json!(request_id);
        }
        let mut response = (error.status, Json(body)).into_response();
        if error.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Reads a body the way Inngest's event API does (an array of events, or one event),
/// checks every event, and returns them in order, ready for [`crate::engine::Engine::ingest`].
///
/// The body is split into the text of each event first, reading an array no further than
/// one event past [`MAX_EVENTS`]; each event is then parsed on its own into what is
/// stored, so no tree of the whole batch is ever built.
pub(crate) fn parse_batch(body: &[u8]) -> Result<Vec<EventInput>, ApiError> {
    split_batch(body)?
        .into_iter()
        .enumerate()
        .map(|(index, event)| parse_event(index, event))
        .collect()
}

/// The text of each event of the body, in order.
fn split_batch(body: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let invalid = |err: serde_json::Error| {
        ApiError::bad_request("invalid_json", format!("invalid JSON: {err}"))
    };
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(vec![serde_json::from_slice(body).map_err(invalid)?]),
        Some(b'[') => {
            let over = Cell::new(false);
            let mut reader = serde_json::Deserializer::from_slice(body);
            let events = UpToMax { over: &over }
                .deserialize(&mut reader)
                .and_then(|events| reader.end().map(|()| events));
            match events {
                Ok(events) => Ok(events),
                Err(_) if over.get() => Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_events",
                    format!(
                        "more than {MAX_EVENTS} events in one request; at most {MAX_EVENTS} are accepted"
                    ),
                )),
                Err(err) => Err(invalid(err)),
            }
        }
        _ => match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Err(err) => Err(invalid(err)),
            Ok(_) => Err(ApiError::bad_request(
                "invalid_json",
                "the body must be an event object or an array of events",
            )),
        },
    }
}

/// An array of at most [`MAX_EVENTS`] values, read as their text; `over` says when it
/// stopped at one more.
struct UpToMax<'a> {
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for UpToMax<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for UpToMax<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of at most {MAX_EVENTS} events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::new();
        while let Some(event) = seq.next_element::<&'de RawValue>()? {
            if events.len() == MAX_EVENTS {
                self.over.set(true);
                return Err(serde::de::Error::custom("too many events"));
            }
            events.push(event);
        }
        Ok(events)
    }
}

fn parse_event(index: usize, event: &RawValue) -> Result<EventInput, ApiError> {
    let bad = |code: &'static str, what: String| {
        ApiError::bad_request(code, format!("event {index}: {what}"))
    };
    let text = event.get();
    if !text.starts_with('{') {
        return Err(bad(
            "invalid_event",
            "an event must be a JSON object".into(),
        ));
    }
    if text.len() > MAX_EVENT_BYTES {
        return Err(bad(
            "event_too_large",
            format!(
                "{} bytes; an event may have at most {MAX_EVENT_BYTES}",
                text.len()
            ),
        ));
    }
    let mut fields: Map<String, Value> = serde_json::from_str(text)
        .map_err(|err| bad("invalid_event", format!("unreadable: {err}")))?;
    let name = match fields.remove("name") {
        None | Some(Value::Null) => return Err(bad("missing_name", "`name` is required".into())),
        Some(Value::String(name)) if name.trim().is_empty() => {
            return Err(bad("missing_name", "`name` is empty".into()));
        }
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(bad(
                "invalid_name",
                format!("`name` must be a string, not {}", kind(&other)),
            ));
        }
    };
    check_text("name", &name).map_err(|what| bad("invalid_name", what))?;
    if let Some(prefix) = RESERVED_PREFIXES
        .iter()
        .find(|prefix| starts_with_ignore_case(&name, prefix))
    {
        return Err(bad(
            "reserved_name",
            format!(
                "names under `{prefix}` are reserved to paysteps: `{name}` cannot be sent here"
            ),
        ));
    }
    let data = match fields.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(other) => {
            return Err(bad(
                "invalid_data",
                format!("`data` must be an object, not {}", kind(&other)),
            ));
        }
    };
    let id = match fields.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.is_empty() => None,
        Some(Value::String(id)) => {
            check_text("id", &id).map_err(|what| bad("invalid_id", what))?;
            Some(id)
        }
        Some(other) => {
            return Err(bad(
                "invalid_id",
                format!("`id` must be a string, not {}", kind(&other)),
            ));
        }
    };
    let ts = match fields.remove("ts") {
        None | Some(Value::Null) => None,
        Some(Value::Number(ts)) => match ts.as_i64() {
            // 0 means "now", as in Inngest.
            Some(0) => None,
            Some(ts) if ts > 0 => Some(ts),
            _ => {
                return Err(bad(
                    "invalid_ts",
                    format!("`ts` must be milliseconds since the epoch, not {ts}"),
                ));
            }
        },
        Some(other) => {
            return Err(bad(
                "invalid_ts",
                format!(
                    "`ts` must be an integer (milliseconds), not {}",
                    kind(&other)
                ),
            ));
        }
    };
    // `v` and `user` are checked for their type; paysteps keeps no column for them, and
    // mixing them into `data` would change what functions read.
    match fields.get("v") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(other) => {
            return Err(bad(
                "invalid_field",
                format!("`v` must be a string, not {}", kind(other)),
            ));
        }
    }
    match fields.get("user") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(other) => {
            return Err(bad(
                "invalid_field",
                format!("`user` must be an object, not {}", kind(other)),
            ));
        }
    }
    Ok(EventInput {
        name,
        data: Value::Object(data).to_string(),
        dedupe_key: id.as_ref().map(|id| format!("api:{id}")),
        dedupe_window: id.as_ref().map(|_| DEDUPE_WINDOW),
        external_id: id,
        ts,
        source: "api",
        object_id: None,
        customer: None,
    })
}

/// Names and ids are indexed and shown: bounded, and free of control characters
/// (PostgreSQL refuses NUL in text).
fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_NAME_BYTES {
        return Err(format!(
            "`{field}` is {} bytes; at most {MAX_NAME_BYTES}",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("`{field}` contains control characters"));
    }
    Ok(())
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        match parse_batch(body.as_bytes()) {
            Ok(events) => panic!("accepted {events:?}"),
            Err(err) => {
                assert_eq!(err.status, StatusCode::BAD_REQUEST);
                assert!(!err.message.is_empty());
                err.code
            }
        }
    }

    #[test]
    fn an_sdk_body_reads_as_its_events_in_order() {
        let events = parse_batch(
            br#"[{"name":"app/a","data":{"n":1},"ts":1795423382332},
                 {"name":"app/b","id":"order-1","v":"2024-01-01.1","user":{"id":"u"}},
                 {"name":"app/c","data":null,"ts":0,"id":""}]"#,
        )
        .expect("valid");
        let names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["app/a", "app/b", "app/c"]);
        assert_eq!(events[0].data, r#"{"n":1}"#);
        assert_eq!(events[0].ts, Some(1795423382332));
        assert_eq!(events[0].dedupe_key, None);
        assert_eq!(events[1].data, "{}");
        assert_eq!(events[1].dedupe_key.as_deref(), Some("api:order-1"));
        assert_eq!(events[1].external_id.as_deref(), Some("order-1"));
        assert_eq!(events[1].dedupe_window, Some(DEDUPE_WINDOW));
        assert_eq!(events[1].source, "api");
        assert_eq!((events[2].ts, &events[2].dedupe_key), (None, &None));

        let one = parse_batch(br#"{"name":"app/one"}"#).expect("one object");
        assert_eq!(one.len(), 1);
        assert!(parse_batch(b"[]").expect("empty").is_empty());
    }

    #[test]
    fn every_bad_event_has_its_code() {
        assert_eq!(code("{\"name\":"), "invalid_json");
        assert_eq!(code("\"app/a\""), "invalid_json");
        assert_eq!(code("[1]"), "invalid_event");
        assert_eq!(code(r#"[{"data":{}}]"#), "missing_name");
        assert_eq!(code(r#"[{"name":"  "}]"#), "missing_name");
        assert_eq!(code(r#"[{"name":7}]"#), "invalid_name");
        assert_eq!(code(r#"[{"name":"app/a\u0000"}]"#), "invalid_name");
        assert_eq!(code(r#"[{"name":"stripe/invoice.paid"}]"#), "reserved_name");
        assert_eq!(code(r#"[{"name":"Stripe/invoice.paid"}]"#), "reserved_name");
        assert_eq!(
            code(r#"[{"name":"paysteps/function.failed"}]"#),
            "reserved_name"
        );
        assert_eq!(code(r#"[{"name":"app/a","data":[1]}]"#), "invalid_data");
        assert_eq!(code(r#"[{"name":"app/a","data":"x"}]"#), "invalid_data");
        assert_eq!(code(r#"[{"name":"app/a","id":5}]"#), "invalid_id");
        assert_eq!(code(r#"[{"name":"app/a","ts":"now"}]"#), "invalid_ts");
        assert_eq!(code(r#"[{"name":"app/a","ts":-5}]"#), "invalid_ts");
        assert_eq!(code(r#"[{"name":"app/a","ts":1.5}]"#), "invalid_ts");
        assert_eq!(code(r#"[{"name":"app/a","v":1}]"#), "invalid_field");
        assert_eq!(code(r#"[{"name":"app/a","user":"u"}]"#), "invalid_field");
        let long = format!(r#"[{{"name":"app/{}"}}]"#, "x".repeat(MAX_NAME_BYTES));
        assert_eq!(code(&long), "invalid_name");
        let big = format!(
            r#"[{{"name":"app/a","data":{{"s":"{}"}}}}]"#,
            "x".repeat(MAX_EVENT_BYTES)
        );
        assert_eq!(code(&big), "event_too_large");
        let many = format!(
            "[{}]",
            vec![r#"{"name":"app/a"}"#; MAX_EVENTS + 1].join(",")
        );
        let over = parse_batch(many.as_bytes()).expect_err("one too many");
        assert_eq!(
            (over.status, over.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events")
        );
        // Counted before the rest is read: what follows the last event allowed is not
        // even looked at.
        let cut = format!("{},{{not json", &many[..many.len() - 1]);
        assert_eq!(
            parse_batch(cut.as_bytes()).expect_err("over").code,
            "too_many_events"
        );
        let most = format!("[{}]", vec![r#"{"name":"app/a"}"#; MAX_EVENTS].join(","));
        assert_eq!(
            parse_batch(most.as_bytes()).expect("at the limit").len(),
            MAX_EVENTS
        );
    }

    #[test]
    fn a_bad_event_names_its_position() {
        let err = parse_batch(br#"[{"name":"app/a"},{"name":"app/b","data":3}]"#)
            .expect_err("second is bad");
        assert!(err.message.starts_with("event 1: "), "{}", err.message);
    }

    #[test]
    fn the_key_is_not_logged() {
        let uri: Uri = "/e/key_live_1?x=1".parse().expect("uri");
        assert_eq!(loggable_uri(&uri), "/e/[redacted]");
        let uri: Uri = "/api/v1/runs?status=failed".parse().expect("uri");
        assert_eq!(loggable_uri(&uri), "/api/v1/runs?status=failed");
    }

    #[test]
    fn only_configured_keys_are_accepted() {
        assert!(EventKeys::Any.accepts("NO_EVENT_KEY_SET"));
        let keys = EventKeys::only(" key_a, key_b ,");
        assert!(keys.accepts("key_a") && keys.accepts("key_b"));
        assert!(!keys.accepts("key_c") && !keys.accepts("") && !keys.accepts("key_"));
        assert!(!EventKeys::only("").accepts(""));
        assert!(!format!("{keys:?}").contains("key_a"), "{keys:?}");
    }
}
