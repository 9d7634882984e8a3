use super::*;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

fn state(created: i64, status: &str) -> SubscriptionState {
    SubscriptionState {
        id: "sub_1".into(),
        user_id: None,
        customer_id: Some("cus_1".into()),
        status: status.into(),
        price_id: Some("price_1".into()),
        current_period_end: Some(1_000),
        cancel_at_period_end: false,
        canceled_at: None,
        event_created: created,
    }
}

fn change(created: i64, status: &str, period_end: Option<i64>) -> SubscriptionChange {
    SubscriptionChange {
        id: "sub_1".into(),
        user_id: Some("user_1".into()),
        customer_id: Some("cus_1".into()),
        status: status.into(),
        current_period_end: period_end,
        event_created: created,
    }
}

async fn subscription(store: &Store) -> UserSubscription {
    user_subscription(store, "user_1").await.unwrap().unwrap()
}

#[tokio::test]
async fn out_of_order_subscription_events_converge_without_regressing() {
    let (_dir, store) = store().await;
    let canceled = SubscriptionState {
        canceled_at: Some(40),
        ..state(40, "canceled")
    };
    store
        .write(move |tx| {
            Box::pin(async move {
                // Newest first: checkout activates without knowing price or period.
                change_subscription(tx, &change(30, "active", None), 1).await?;
                upsert_subscription(tx, &state(20, "active"), 2).await?;
                upsert_subscription(tx, &state(10, "incomplete"), 3).await
            })
        })
        .await
        .unwrap();
    let s = subscription(&store).await;
    assert_eq!(
        (
            s.status.as_str(),
            s.price_id.as_deref(),
            s.current_period_end,
            s.active
        ),
        ("active", Some("price_1"), Some(1_000), true)
    );

    store
        .write(move |tx| {
            Box::pin(async move {
                upsert_subscription(tx, &canceled, 4).await?;
                upsert_subscription(tx, &state(20, "active"), 5).await?;
                change_subscription(tx, &change(35, "active", Some(2_000)), 6).await
            })
        })
        .await
        .unwrap();
    let s = subscription(&store).await;
    assert_eq!((s.status.as_str(), s.active), ("canceled", false));
    assert_eq!(
        s.current_period_end,
        Some(1_000),
        "an older invoice moved the period"
    );
    let (canceled_at, watermark): (Option<i64>, i64) = store
        .fetch_one(
            "SELECT canceled_at, event_created FROM subscriptions WHERE id = 'sub_1'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!((canceled_at, watermark), (Some(40), 40));
}

#[tokio::test]
async fn newer_invoices_only_extend_the_period() {
    let (_dir, store) = store().await;
    store
        .write(move |tx| {
            Box::pin(async move {
                change_subscription(tx, &change(10, "active", Some(100)), 1).await?;
                change_subscription(tx, &change(20, "past_due", Some(50)), 2).await?;
                change_subscription(tx, &change(20, "past_due", None), 3).await
            })
        })
        .await
        .unwrap();
    let s = subscription(&store).await;
    assert_eq!(
        (s.status.as_str(), s.current_period_end),
        ("past_due", Some(100))
    );
    assert!(!s.active);
}

#[tokio::test]
async fn a_customer_link_is_kept_and_gives_earlier_rows_their_user() {
    let (_dir, store) = store().await;
    let link = |user: &str, created| CustomerLink {
        customer_id: "cus_1".into(),
        user_id: user.into(),
        email: None,
        event_created: created,
    };
    let (newer, older) = (link("user_1", 20), link("user_2", 10));
    store
        .write(move |tx| {
            Box::pin(async move {
                upsert_subscription(tx, &state(5, "active"), 1).await?;
                link_customer(tx, &newer, 2).await?;
                link_customer(tx, &older, 3).await?;
                linked_user(tx, "cus_1").await
            })
        })
        .await
        .map(|user| assert_eq!(user.as_deref(), Some("user_1")))
        .unwrap();
    assert_eq!(subscription(&store).await.id, "sub_1");
}

#[tokio::test]
async fn a_failure_is_logged_once_and_live_subscriptions_come_first() {
    let (_dir, store) = store().await;
    let failure = NewFailure {
        id: "evt_1".into(),
        kind: FailureKind::Payment,
        user_id: Some("user_1".into()),
        customer_id: None,
        object_id: Some("pi_1".into()),
        amount: Some(1099),
        currency: Some("usd".into()),
        code: Some("card_declined".into()),
        decline_code: Some("insufficient_funds".into()),
        message: None,
        event_id: Some("evt_1".into()),
        created: 7,
    };
    let old = SubscriptionState {
        id: "sub_0".into(),
        user_id: Some("user_1".into()),
        ..state(99, "canceled")
    };
    let live = SubscriptionState {
        user_id: Some("user_1".into()),
        ..state(1, "trialing")
    };
    let inserted = store
        .write(move |tx| {
            Box::pin(async move {
                upsert_subscription(tx, &old, 1).await?;
                upsert_subscription(tx, &live, 1).await?;
                Ok((
                    record_failure(tx, &failure).await?,
                    record_failure(tx, &failure).await?,
                ))
            })
        })
        .await
        .unwrap();
    assert_eq!(inserted, (true, false));
    let listed = payment_failures(&store, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, "payment");
    let s = subscription(&store).await;
    assert_eq!((s.id.as_str(), s.active), ("sub_1", true));
    assert!(payments(&store, 10).await.unwrap().is_empty());
    assert_eq!(user_subscription(&store, "user_2").await.unwrap(), None);
}
