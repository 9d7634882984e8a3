//! The failure handler of every built-in function: a run that failed for good is logged in
//! `payment_failures` (kind `processing`), once per failed run.

use std::collections::HashMap;

use serde_json::Value;

use super::attempts::AttemptLinks;
use super::direct_user;
use super::repo::{self, FailureKind, NewFailure};
use crate::engine::{Ctx, Failure, Interrupt, system_now_ms};

const RECORD: &str = "record-processing-failure";

pub(super) async fn record(ctx: Ctx) -> Result<NewFailure, Interrupt> {
    let failure = ctx
        .failure()
        .ok_or_else(|| Interrupt::fail("the failure handler was started without a failed run"))?;
    let row = failure_row(&failure);
    ctx.step
        .run_tx(RECORD, move |tx| {
            Box::pin(async move {
                let mut row = row;
                if let (None, Some(customer)) = (&row.user_id, &row.customer_id) {
                    row.user_id = repo::linked_user(tx, customer).await?;
                }
                row.created = system_now_ms() / 1000;
                repo::record_failure(tx, &row).await?;
                Ok(row)
            })
        })
        .await
}

/// The row for a failed run, with what the raw event says about its object: the payload
/// is read as plain JSON, since the failure may be that it did not parse.
fn failure_row(failure: &Failure) -> NewFailure {
    let object = failure.event.data.pointer("/data/object");
    let field = |key: &str| object.and_then(|o| o.get(key));
    let text = |key: &str| field(key).and_then(Value::as_str).map(str::to_owned);
    let customer_id = match field("customer") {
        Some(Value::Object(expanded)) => expanded.get("id").and_then(Value::as_str),
        other => other.and_then(Value::as_str),
    }
    .map(str::to_owned);
    let metadata: Option<HashMap<String, String>> =
        field("metadata").and_then(|m| serde_json::from_value(m.clone()).ok());
    NewFailure {
        id: format!("run:{}", failure.run_id),
        kind: FailureKind::Processing,
        user_id: direct_user(text("client_reference_id").as_deref(), metadata.as_ref()),
        customer_id,
        object_id: text("id"),
        amount: ["amount", "amount_total", "amount_due"]
            .into_iter()
            .find_map(|key| field(key).and_then(Value::as_i64)),
        currency: text("currency"),
        code: Some("function_failed".to_owned()),
        decline_code: None,
        message: Some(failure.error.clone()),
        event_id: failure.event.external_id.clone(),
        created: 0,
        links: AttemptLinks::default(),
        livemode: failure.event.data.get("livemode") == Some(&Value::Bool(true)),
        account: failure
            .event
            .data
            .get("account")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::Event;

    fn failure(data: Value) -> Failure {
        Failure {
            function_id: "payment-intent-payment-failed".parse().unwrap(),
            run_id: "run_1".parse().unwrap(),
            error: "step 'record-payment' failed: boom".into(),
            event: Event {
                id: "ev_1".parse().unwrap(),
                external_id: Some("evt_1".into()),
                name: "stripe/payment_intent.payment_failed".into(),
                data,
                ts: 0,
            },
        }
    }

    #[test]
    fn a_failed_run_is_keyed_by_its_run_and_names_what_the_event_names() {
        let row = failure_row(&failure(json!({
            "data": { "object": {
                "id": "pi_1", "customer": { "id": "cus_1" }, "amount": 1099,
                "currency": "usd", "metadata": { "user_id": "user_1" }
            }}
        })));
        assert_eq!(row.id, "run:run_1");
        assert_eq!(row.kind, FailureKind::Processing);
        assert_eq!(row.code.as_deref(), Some("function_failed"));
        assert_eq!(
            row.message.as_deref(),
            Some("step 'record-payment' failed: boom")
        );
        assert_eq!(row.event_id.as_deref(), Some("evt_1"));
        assert_eq!(row.object_id.as_deref(), Some("pi_1"));
        assert_eq!(row.customer_id.as_deref(), Some("cus_1"));
        assert_eq!(row.user_id.as_deref(), Some("user_1"));
        assert_eq!(
            (row.amount, row.currency.as_deref()),
            (Some(1099), Some("usd"))
        );

        let row = failure_row(&failure(json!("not an envelope")));
        assert_eq!(row.id, "run:run_1");
        assert_eq!(
            (row.object_id, row.customer_id, row.user_id),
            (None, None, None)
        );
    }
}
