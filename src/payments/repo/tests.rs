use super::*;
use crate::store::{Store, Write};
use crate::stripe::objects::{SubscriptionItem, Terms};

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

fn item(id: &str, price: &str, quantity: u64) -> SubscriptionItem {
    SubscriptionItem {
        id: Some(id.into()),
        price: Some(price.into()),
        product: Some("prod_1".into()),
        quantity,
        current_period_start: None,
        current_period_end: None,
    }
}

fn view(created: i64, event_type: &str, status: &str) -> SubscriptionView {
    use crate::payments::ordering::{Source, Version, rank};
    SubscriptionView {
        id: "sub_1".into(),
        user_id: Some("user_1".into()),
        customer_id: Some("cus_1".into()),
        version: Version {
            source: if event_type.starts_with("customer.subscription.") {
                Source::Event
            } else {
                Source::Provisional
            },
            created,
            rank: rank(event_type),
            event_id: format!("evt_{created}_{status}"),
            status: status.into(),
            previous_status: None,
        },
        terms: Terms {
            items: vec![
                item("si_1", &format!("price_{created}"), 3),
                item("si_2", "price_addon", 1),
            ],
            current_period_end: Some(created + 1000),
            ..Terms::default()
        },
        api_version: None,
        livemode: false,
        account: None,
    }
}

async fn write_all(store: &Store, views: Vec<SubscriptionView>) -> Vec<Written> {
    store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                let mut written = Vec::new();
                for v in &views {
                    written.push(write_subscription(tx, v, 1).await?);
                }
                Ok(written)
            })
        })
        .await
        .unwrap()
}

async fn subscription(store: &Store) -> UserSubscription {
    user_subscriptions(store, "user_1", &Entitlement::default())
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn the_newest_snapshot_wins_whole_and_a_provisional_view_never_replaces_one() {
    let (_dir, store) = store().await;
    let written = write_all(
        &store,
        vec![
            view(30, "invoice.paid", "active"),
            view(20, "customer.subscription.updated", "past_due"),
            view(10, "customer.subscription.created", "incomplete"),
            view(40, "invoice.payment_failed", "past_due"),
        ],
    )
    .await;
    assert_eq!(
        written,
        [
            Written::Applied { previous: None },
            Written::Applied {
                previous: Some("active".into())
            },
            Written::Superseded,
            Written::Superseded,
        ]
    );
    let s = subscription(&store).await;
    assert_eq!((s.status.as_str(), s.entitled), ("past_due", false));
    assert_eq!(s.source, "event");
    assert_eq!(s.current_period_end, Some(1020));
    let items: Vec<_> = s
        .items
        .iter()
        .map(|i| (i.price.as_deref(), i.quantity))
        .collect();
    assert_eq!(items, [(Some("price_20"), 3), (Some("price_addon"), 1)]);

    // A newer snapshot replaces the items; canceled is then never revived.
    write_all(
        &store,
        vec![
            view(50, "customer.subscription.deleted", "canceled"),
            view(60, "customer.subscription.updated", "active"),
        ],
    )
    .await;
    let s = subscription(&store).await;
    assert_eq!(s.status, "canceled");
    assert_eq!(s.items[0].price.as_deref(), Some("price_50"));
    assert_eq!(
        store
            .count("SELECT COUNT(*) FROM subscription_items", vec![])
            .await
            .unwrap(),
        2
    );
}

#[test]
fn entitling_statuses_are_checked_when_configured() {
    let e = Entitlement::parse("active, trialing,past_due").unwrap();
    assert!(e.entitles("past_due") && !e.entitles("unpaid"));
    assert!(
        Entitlement::parse("active,bogus")
            .unwrap_err()
            .contains("bogus")
    );
    assert!(Entitlement::parse("canceled").is_err());
    assert!(Entitlement::parse(" , ").is_err());
    assert_eq!(Entitlement::default().statuses(), ["active", "trialing"]);
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
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                let unlinked = SubscriptionView {
                    user_id: None,
                    ..view(5, "customer.subscription.created", "active")
                };
                write_subscription(tx, &unlinked, 1).await?;
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
        links: Default::default(),
        livemode: false,
        account: None,
    };
    let old = SubscriptionView {
        id: "sub_0".into(),
        ..view(99, "customer.subscription.deleted", "canceled")
    };
    let live = view(1, "customer.subscription.created", "trialing");
    let inserted = store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                write_subscription(tx, &old, 1).await?;
                write_subscription(tx, &live, 1).await?;
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
    assert_eq!(
        (s.id.as_str(), s.entitled),
        ("sub_1", true),
        "the entitling one first"
    );
    assert!(payments(&store, 10).await.unwrap().is_empty());
    let counts: Vec<(String, i64)> = subscriptions_by_status(&store)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.status, c.count))
        .collect();
    assert_eq!(counts, [("canceled".into(), 1), ("trialing".into(), 1)]);
    let recent = recent_subscriptions(&store, 1).await.unwrap();
    assert_eq!(recent.len(), 1, "the limit holds");
    let none = user_subscriptions(&store, "user_2", &Entitlement::default()).await;
    assert!(none.unwrap().is_empty());
}
