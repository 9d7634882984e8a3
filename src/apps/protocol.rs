//! What paysteps sends an SDK app to run a function, and what the app answers.
//!
//! A call is a `POST` to the function's URL with `stepId=step` (run from the top, the
//! memoized steps returning at once, until something new happens) or `stepId=<hash>`
//! (run only that planned step). The body carries the run's event and every memoized
//! step by its hashed id; the answer is `200` (the function returned), `206` with the
//! ops that happened, or an error, retriable unless `x-inngest-no-retry: true`.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The target of a call that runs the function from the top.
pub const DISCOVERY: &str = "step";

/// The version of the execution protocol sent before the app has said which it speaks.
pub const VERSION_UNKNOWN: i64 = -1;

/// The body of a call.
#[derive(Debug, Serialize)]
pub struct CallRequest {
    /// The run's event, `{id, name, data, ts, user}`.
    pub event: Value,
    /// Every event of the run: here always the one.
    pub events: Vec<Value>,
    /// Memoized steps by hashed id, each in the form [`Memo::to_json`] gives.
    pub steps: Map<String, Value>,
    pub ctx: CallCtx,
    /// The protocol version the app reported, or [`VERSION_UNKNOWN`].
    pub version: i64,
}

/// `ctx` of a call.
#[derive(Debug, Serialize)]
pub struct CallCtx {
    pub run_id: String,
    /// Attempts of this call's target so far (0 on the first).
    pub attempt: u32,
    /// Retries plus one.
    pub max_attempts: u32,
    /// While parallel steps are pending: the app plans every step instead of running one.
    pub disable_immediate_execution: bool,
    pub use_api: bool,
    pub stack: Stack,
}

/// The memoized steps' ids in the order they completed.
#[derive(Debug, Serialize)]
pub struct Stack {
    pub stack: Vec<String>,
    pub current: usize,
}

/// A memoized step as the app reads it back.
#[derive(Debug, Clone, PartialEq)]
pub enum Memo {
    /// A step that returned: `{"data": …}`.
    Data(Value),
    /// A step that failed for good: `{"error": {name, message, stack}}`.
    Error(Value),
    /// A sleep that ended, or a wait that timed out: `null`.
    Nothing,
    /// A wait that matched: the event itself.
    Event(Value),
}

impl Memo {
    pub fn to_json(&self) -> Value {
        match self {
            Memo::Data(data) => json!({ "data": data }),
            Memo::Error(error) => json!({ "error": error }),
            Memo::Nothing => Value::Null,
            Memo::Event(event) => event.clone(),
        }
    }
}

/// An event as an SDK function receives it.
pub fn sdk_event(id: &str, name: &str, data: &Value, ts: i64) -> Value {
    json!({ "id": id, "name": name, "data": data, "ts": ts, "user": {} })
}

/// An error as the SDK reports it and reads it back: `{name, message, stack}`.
pub fn sdk_error(name: &str, message: &str) -> Value {
    json!({ "name": name, "message": message, "stack": "" })
}

/// One thing that happened in a call, as a `206` reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Op {
    /// The step's hashed id.
    pub id: String,
    pub op: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The step's id as the user wrote it.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub opts: Value,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

impl Op {
    pub fn code(&self) -> OpCode {
        OpCode::parse(&self.op)
    }

    /// The step's error as the app reported it, or a plain one when it sent none.
    pub fn error_or_default(&self) -> Value {
        self.error
            .clone()
            .unwrap_or_else(|| sdk_error("Error", "step failed"))
    }

    /// The name to show for the step.
    pub fn label(&self) -> &str {
        self.display_name
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or(&self.id)
    }
}

/// The ops paysteps knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpCode {
    /// A step ran and returned (`Step` is the older name).
    StepRun,
    /// A step's attempt failed; it may be retried.
    StepError,
    /// A step failed for good; its error is memoized and the function goes on.
    StepFailed,
    /// A step to run in a call of its own.
    StepPlanned,
    Sleep,
    WaitForEvent,
    InvokeFunction,
    /// The function returned (in the same answer as other ops).
    RunComplete,
    /// Run discovery again.
    DiscoveryRequest,
    /// Any other op: the run fails with an error naming it.
    Unsupported(String),
}

impl OpCode {
    fn parse(op: &str) -> OpCode {
        match op {
            "StepRun" | "Step" => OpCode::StepRun,
            "StepError" => OpCode::StepError,
            "StepFailed" => OpCode::StepFailed,
            "StepPlanned" => OpCode::StepPlanned,
            "Sleep" => OpCode::Sleep,
            "WaitForEvent" => OpCode::WaitForEvent,
            "InvokeFunction" => OpCode::InvokeFunction,
            "RunComplete" => OpCode::RunComplete,
            "DiscoveryRequest" => OpCode::DiscoveryRequest,
            other => OpCode::Unsupported(other.to_owned()),
        }
    }
}

/// What an app answered a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `200`: the function returned this.
    Returned(Value),
    /// `206`: these ops happened.
    Ops {
        ops: Vec<Op>,
        /// `x-inngest-no-retry: true`: a step error in these ops is final.
        no_retry: bool,
        retry_after: Option<Duration>,
    },
    /// The app could not be reached, or a proxy in front of it answered that it is away
    /// (`502`, `503`, `504` without the SDK's header): nothing ran, nothing counts as an
    /// attempt.
    Unreachable(String),
    /// The function threw, or the call failed.
    Error {
        error: Value,
        /// Whether another attempt may succeed (`x-inngest-no-retry` is not `true`).
        retriable: bool,
        retry_after: Option<Duration>,
    },
}

/// Reads an app's answer: its status, headers and body, and the protocol version it
/// reports in `x-inngest-req-version`.
pub fn read_answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> (Answer, Option<i64>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let version = header("x-inngest-req-version").and_then(|v| v.trim().parse().ok());
    let no_retry = header("x-inngest-no-retry") == Some("true");
    let retry_after = header("retry-after").and_then(parse_retry_after);
    let from_sdk = header("x-inngest-sdk").is_some();
    let parsed: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Some(Value::Null)
    } else {
        serde_json::from_slice(body).ok()
    };
    let error = |message: String| Answer::Error {
        error: sdk_error("Error", &message),
        retriable: true,
        retry_after,
    };
    let answer = match status.as_u16() {
        200..=299 if !from_sdk => error(format!(
            "the app answered {status} without x-inngest-sdk: this is not an Inngest SDK endpoint"
        )),
        200 => match parsed {
            Some(value) => Answer::Returned(value),
            None => error("the app's 200 answer is not JSON".into()),
        },
        206 => match parsed.map(ops_of) {
            Some(Ok(ops)) => Answer::Ops {
                ops,
                no_retry,
                retry_after,
            },
            Some(Err(message)) => error(message),
            None => error("the app's 206 answer is not JSON".into()),
        },
        502..=504 if !from_sdk => Answer::Unreachable(format!("the app answered {status}")),
        201 => error("streaming answers (INNGEST_STREAMING) are not supported".into()),
        401 => error("the app refused the request's signature (401): check that it and paysteps share the signing key".into()),
        _ => Answer::Error {
            error: parsed
                .filter(|v| v.get("message").is_some())
                .unwrap_or_else(|| {
                    sdk_error(
                        "Error",
                        &format!(
                            "the app answered {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        ),
                    )
                }),
            retriable: !no_retry,
            retry_after,
        },
    };
    (answer, version)
}

fn ops_of(body: Value) -> Result<Vec<Op>, String> {
    let items = match body {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => return Err("the app's 206 answer is neither an op nor a list of ops".into()),
    };
    items
        .into_iter()
        .map(|item| {
            serde_json::from_value(item)
                .map_err(|e| format!("the app sent an op paysteps cannot read: {e}"))
        })
        .collect()
}

/// `Retry-After`: seconds, or an RFC 3339 or HTTP date, kept within [1 s, 24 h].
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs as i64,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc3339(value)
                .or_else(|_| chrono::DateTime::parse_from_rfc2822(value))
                .ok()?;
            at.timestamp() - chrono::Utc::now().timestamp()
        }
    };
    Some(Duration::from_secs(secs.clamp(1, 24 * 3600) as u64))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            "x-inngest-sdk",
            HeaderValue::from_static("inngest-js:v4.24.0"),
        );
        map.insert("x-inngest-req-version", HeaderValue::from_static("2"));
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_step_that_ran_is_read_with_its_data_and_the_version() {
        let body = br#"[{"id":"6f951bc10819e968dbee7ec0f3f6dad953fa9b27","op":"StepRun","name":"load-user","opts":{},"displayName":"load-user","userland":{"id":"load-user"},"data":{"id":"u1"},"timing":{"a":1,"b":0}}]"#;
        let (answer, version) = read_answer(StatusCode::PARTIAL_CONTENT, &headers(&[]), body);
        assert_eq!(version, Some(2));
        let Answer::Ops { ops, no_retry, .. } = answer else {
            panic!("{answer:?}")
        };
        assert!(!no_retry);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].code(), OpCode::StepRun);
        assert_eq!(ops[0].label(), "load-user");
        assert_eq!(ops[0].data, Some(json!({"id": "u1"})));
    }

    #[test]
    fn unknown_ops_are_kept_to_be_refused_by_name() {
        let body = br#"[{"id":"a","op":"AIGateway"},{"id":"b","op":"StepPlanned","opts":{"parallelMode":"race"}}]"#;
        let (answer, _) = read_answer(StatusCode::PARTIAL_CONTENT, &headers(&[]), body);
        let Answer::Ops { ops, .. } = answer else {
            panic!()
        };
        assert_eq!(ops[0].code(), OpCode::Unsupported("AIGateway".into()));
        assert_eq!(ops[1].code(), OpCode::StepPlanned);
    }

    #[test]
    fn errors_are_retriable_unless_the_app_says_no_retry() {
        let body = br#"{"name":"NonRetriableError","message":"no","stack":"","__serialized":true}"#;
        let (answer, _) = read_answer(
            StatusCode::BAD_REQUEST,
            &headers(&[("x-inngest-no-retry", "true")]),
            body,
        );
        assert!(
            matches!(&answer, Answer::Error { retriable: false, error, .. } if error["message"] == "no")
        );
        let (answer, _) = read_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &headers(&[("x-inngest-no-retry", "false"), ("retry-after", "30")]),
            br#"{"name":"Error","message":"boom"}"#,
        );
        assert_eq!(
            answer,
            Answer::Error {
                error: json!({"name": "Error", "message": "boom"}),
                retriable: true,
                retry_after: Some(Duration::from_secs(30)),
            }
        );
    }

    #[test]
    fn a_proxy_saying_the_app_is_away_is_no_attempt_but_the_app_s_own_503_is() {
        let (answer, _) = read_answer(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"bad gateway");
        assert_eq!(
            answer,
            Answer::Unreachable("the app answered 502 Bad Gateway".into())
        );
        let (answer, _) = read_answer(StatusCode::SERVICE_UNAVAILABLE, &headers(&[]), b"{}");
        assert!(matches!(
            answer,
            Answer::Error {
                retriable: true,
                ..
            }
        ));
    }

    #[test]
    fn a_success_without_the_sdk_header_is_not_trusted() {
        let (answer, version) = read_answer(StatusCode::OK, &HeaderMap::new(), b"<html>");
        assert!(matches!(
            answer,
            Answer::Error {
                retriable: true,
                ..
            }
        ));
        assert_eq!(version, None);
        let (answer, _) = read_answer(StatusCode::OK, &headers(&[]), b"");
        assert_eq!(answer, Answer::Returned(Value::Null));
    }

    #[test]
    fn memos_take_the_forms_the_sdk_reads() {
        assert_eq!(Memo::Data(json!(1)).to_json(), json!({"data": 1}));
        assert_eq!(
            Memo::Error(json!({"message": "x"})).to_json(),
            json!({"error": {"message": "x"}})
        );
        assert_eq!(Memo::Nothing.to_json(), Value::Null);
        assert_eq!(
            Memo::Event(json!({"name": "e"})).to_json(),
            json!({"name": "e"})
        );
    }

    #[test]
    fn retry_after_is_clamped() {
        assert_eq!(parse_retry_after("0"), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after("999999"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
