//! Properties of the envelope reader over arbitrary bytes, arbitrary JSON and events
//! that are valid or one field away from it.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, json};

use super::*;

/// Any JSON value, a few levels deep (numbers of every kind included).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "evt_[a-z0-9]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text with no control characters, as ids and types must be.
fn plain_text(chars: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(
        any::<char>().prop_filter("no control characters", |c| !c.is_control()),
        chars,
    )
    .prop_map(String::from_iter)
}

/// A customer as Stripe sends it: absent, null, an id, or an expanded object.
#[derive(Debug, Clone)]
enum Customer {
    Absent,
    Null,
    Id(String),
    Expanded(String),
}

fn customer() -> impl Strategy<Value = Customer> {
    prop_oneof![
        Just(Customer::Absent),
        Just(Customer::Null),
        plain_text(0..40).prop_map(Customer::Id),
        plain_text(0..40).prop_map(Customer::Expanded),
    ]
}

prop_compose! {
    /// A valid event with its envelope, and unread fields of any JSON at both levels.
    fn valid_event()(
        id in plain_text(1..40),
        event_type in plain_text(1..40),
        created in any::<i64>(),
        livemode in proptest::option::of(any::<bool>()),
        object_id in proptest::option::of(plain_text(0..40)),
        customer in customer(),
        extra in btree_map("x_[a-z]{1,6}", any_json(), 0..3),
        object_extra in btree_map("x_[a-z]{1,6}", any_json(), 0..3),
    ) -> (Value, Envelope) {
        let id = format!("evt_{id}");
        let mut object: Map<String, Value> = object_extra.into_iter().collect();
        if let Some(object_id) = &object_id {
            object.insert("id".into(), json!(object_id));
        }
        let customer_id = match &customer {
            Customer::Absent => None,
            Customer::Null => {
                object.insert("customer".into(), Value::Null);
                None
            }
            Customer::Id(id) => {
                object.insert("customer".into(), json!(id));
                Some(id.clone())
            }
            Customer::Expanded(id) => {
                object.insert("customer".into(), json!({ "id": id, "object": "customer" }));
                Some(id.clone())
            }
        };
        let mut event: Map<String, Value> = extra.into_iter().collect();
        event.insert("id".into(), json!(id));
        event.insert("object".into(), json!("event"));
        event.insert("type".into(), json!(event_type));
        event.insert("created".into(), json!(created));
        if let Some(livemode) = livemode {
            event.insert("livemode".into(), json!(livemode));
        }
        event.insert("data".into(), json!({ "object": object }));
        let envelope = Envelope {
            id,
            event_type,
            created,
            livemode: livemode.unwrap_or(false),
            object_id,
            customer: customer_id,
        };
        (Value::Object(event), envelope)
    }
}

/// Where in an event a field can be replaced.
const PATHS: [&[&str]; 8] = [
    &["id"],
    &["object"],
    &["type"],
    &["created"],
    &["livemode"],
    &["data"],
    &["data", "object"],
    &["data", "object", "customer"],
];

fn replace(event: &mut Value, path: &[&str], with: Value) {
    let (last, parents) = path.split_last().expect("a path");
    let mut at = event;
    for key in parents {
        at = &mut at[*key];
    }
    if let Value::Object(fields) = at {
        fields.insert((*last).to_owned(), with);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_read_or_refused_without_a_panic(body in vec(any::<u8>(), 0..512)) {
        if let Err(err) = parse(&body) {
            prop_assert!(matches!(err.code(), "invalid_json" | "invalid_event"));
        }
    }

    #[test]
    fn arbitrary_json_is_read_or_refused_without_a_panic(value in any_json()) {
        let body = value.to_string();
        match parse(body.as_bytes()) {
            Ok(envelope) => prop_assert_eq!(value["id"].as_str(), Some(envelope.id.as_str())),
            Err(err) if value.is_object() => prop_assert_eq!(err.code(), "invalid_event"),
            Err(err) => prop_assert_eq!(err.code(), "invalid_json"),
        }
    }

    #[test]
    fn a_valid_event_reads_back_its_envelope((event, envelope) in valid_event()) {
        let body = serde_json::to_vec(&event).expect("json");
        prop_assert_eq!(parse(&body).expect("a valid event"), envelope.clone());
        let pretty = serde_json::to_vec_pretty(&event).expect("json");
        prop_assert_eq!(parse(&pretty).expect("a valid event"), envelope);
    }

    #[test]
    fn an_event_with_one_field_replaced_is_read_or_refused_without_a_panic(
        (mut event, _) in valid_event(),
        path in proptest::sample::select(&PATHS[..]),
        with in any_json(),
    ) {
        replace(&mut event, path, with);
        let body = serde_json::to_vec(&event).expect("json");
        if let Err(err) = parse(&body) {
            prop_assert_eq!(err.code(), "invalid_event");
        }
    }

    #[test]
    fn a_valid_event_cut_short_is_invalid_json((event, _) in valid_event(), cut in any::<prop::sample::Index>()) {
        let body = serde_json::to_vec(&event).expect("json");
        let cut = cut.index(body.len());
        let err = parse(&body[..cut]).expect_err("a truncated object");
        prop_assert_eq!(err.code(), "invalid_json");
    }
}
