//! Properties of the event API's batch reader over arbitrary bodies and valid batches.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::*;

/// Any JSON value a few levels deep; `exact` leaves out fractions, whose text need not
/// read back to the same number.
fn any_json(exact: bool) -> BoxedStrategy<Value> {
    let mut leaves = vec![
        Just(Value::Null).boxed(),
        any::<bool>().prop_map(Value::from).boxed(),
        any::<i64>().prop_map(Value::from).boxed(),
        any::<u64>().prop_map(Value::from).boxed(),
        any::<String>().prop_map(Value::from).boxed(),
    ];
    if !exact {
        leaves.push(any::<f64>().prop_map(Value::from).boxed());
    }
    proptest::strategy::Union::new(leaves)
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// An event's fields, each from its own small vocabulary, nearly all valid.
fn near_valid_event() -> impl Strategy<Value = Value> {
    let field = |key: &'static str, values: BoxedStrategy<Value>| {
        proptest::option::of(values).prop_map(move |v| v.map(|v| (key, v)))
    };
    (
        field(
            "name",
            prop_oneof![name().prop_map(Value::from), any_json(false)].boxed(),
        ),
        field("data", any_json(false)),
        field(
            "id",
            prop_oneof![id().prop_map(Value::from), any_json(false)].boxed(),
        ),
        field("ts", any_json(false)),
        field("v", any_json(false)),
        field("user", any_json(false)),
    )
        .prop_map(|(a, b, c, d, e, f)| {
            let fields = [a, b, c, d, e, f].into_iter().flatten();
            Value::Object(fields.map(|(k, v)| (k.to_owned(), v)).collect())
        })
}

/// Text with no control characters.
fn plain_text(chars: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(
        any::<char>().prop_filter("no control characters", |c| !c.is_control()),
        chars,
    )
    .prop_map(String::from_iter)
}

/// A name an application may send: not blank, not reserved.
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["app/[a-z_.]{1,20}", plain_text(1..40)].prop_filter("sendable", |name| {
        !name.trim().is_empty()
            && !RESERVED_PREFIXES
                .iter()
                .any(|prefix| starts_with_ignore_case(name, prefix))
    })
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9-]{1,20}", plain_text(1..40)]
}

/// One valid event as an SDK sends it, and what it must read back as.
#[derive(Debug, Clone)]
struct Sent {
    name: String,
    data: Option<Map<String, Value>>,
    id: Option<String>,
    ts: Option<i64>,
}

impl Sent {
    fn to_json(&self) -> Value {
        let mut event = Map::new();
        event.insert("name".into(), json!(self.name));
        if let Some(data) = &self.data {
            event.insert("data".into(), Value::Object(data.clone()));
        }
        if let Some(id) = &self.id {
            event.insert("id".into(), json!(id));
        }
        if let Some(ts) = self.ts {
            event.insert("ts".into(), json!(ts));
        }
        Value::Object(event)
    }
}

fn sent() -> impl Strategy<Value = Sent> {
    let data = btree_map("[a-z]{1,6}", any_json(true), 0..4).prop_map(|m| m.into_iter().collect());
    (
        name(),
        proptest::option::of(data),
        proptest::option::of(id()),
        proptest::option::of(prop_oneof![1..=1_000i64, 1..=i64::MAX]),
    )
        .prop_map(|(name, data, id, ts)| Sent { name, data, id, ts })
}

fn refused_cleanly(result: &Result<Vec<EventInput>, ApiError>) -> Result<(), TestCaseError> {
    if let Err(err) = result {
        prop_assert!(
            err.status.is_client_error(),
            "{}: {}",
            err.status,
            err.message
        );
        prop_assert!(!err.code.is_empty() && !err.message.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_read_or_refused_with_a_4xx(body in vec(any::<u8>(), 0..512)) {
        refused_cleanly(&parse_batch(&body))?;
    }

    #[test]
    fn arbitrary_json_is_read_or_refused_with_a_4xx(value in any_json(false)) {
        refused_cleanly(&parse_batch(value.to_string().as_bytes()))?;
    }

    #[test]
    fn near_valid_batches_are_read_or_refused_with_a_4xx(
        events in vec(near_valid_event(), 0..6),
        one in any::<bool>(),
    ) {
        let body = match (one, events.first()) {
            (true, Some(first)) => first.to_string(),
            _ => Value::Array(events.clone()).to_string(),
        };
        let result = parse_batch(body.as_bytes());
        refused_cleanly(&result)?;
        if let Ok(read) = result {
            prop_assert_eq!(read.len(), if one && !events.is_empty() { 1 } else { events.len() });
        }
    }

    #[test]
    fn a_valid_batch_of_n_events_reads_back_n_events_in_order(
        events in vec(sent(), 0..12),
        pretty in any::<bool>(),
    ) {
        let batch = Value::Array(events.iter().map(Sent::to_json).collect());
        let body = if pretty {
            serde_json::to_string_pretty(&batch).expect("json")
        } else {
            batch.to_string()
        };
        let read = parse_batch(body.as_bytes())
            .map_err(|err| TestCaseError::fail(format!("{}: {}", err.code, err.message)))?;
        prop_assert_eq!(read.len(), events.len());
        for (sent, read) in events.iter().zip(&read) {
            prop_assert_eq!(&read.name, &sent.name);
            let data: Value = serde_json::from_str(&read.data).expect("data is JSON");
            prop_assert_eq!(data, Value::Object(sent.data.clone().unwrap_or_default()));
            prop_assert_eq!(&read.external_id, &sent.id);
            prop_assert_eq!(read.dedupe_key.clone(), sent.id.as_ref().map(|id| format!("api:{id}")));
            prop_assert_eq!(read.ts, sent.ts);
            prop_assert_eq!(read.source, "api");
        }
    }

    #[test]
    fn a_single_event_object_reads_back_as_one_event(sent in sent()) {
        let read = parse_batch(sent.to_json().to_string().as_bytes())
            .map_err(|err| TestCaseError::fail(format!("{}: {}", err.code, err.message)))?;
        prop_assert_eq!(read.len(), 1);
        prop_assert_eq!(&read[0].name, &sent.name);
    }
}
