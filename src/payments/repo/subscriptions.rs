//! The `subscriptions` and `subscription_items` tables: one view of each subscription,
//! the newest by [`ordering::supersedes`], and the entitlement answer read from them.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args;
use crate::payments::ordering::{self, Source, Version};
use crate::store::{Dialect, Result, Store, StoreTx};
use crate::stripe::objects::Terms;

/// A subscription as one view knows it: a snapshot of the Subscription object, or a
/// provisional view inferred from a checkout or invoice event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionView {
    /// `sub_…`.
    pub id: String,
    /// The application's user, if known.
    pub user_id: Option<String>,
    /// `cus_…`.
    pub customer_id: Option<String>,
    /// Where the view comes from, when, and its status.
    pub version: Version,
    /// Items, period, trial and cancellation (a provisional view knows the period at most).
    pub terms: Terms,
    /// The API version of the payload the view was read from.
    pub api_version: Option<String>,
    /// False for test mode.
    pub livemode: bool,
    /// The connected account it belongs to; `None` for the platform.
    pub account: Option<String>,
}

/// What writing a view did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Written {
    /// The view is now the stored one; holds the status it replaced (`None` for a new row).
    Applied {
        /// The stored status before, if there was a row.
        previous: Option<String>,
    },
    /// The stored view is newer; only a missing user or customer was filled in.
    Superseded,
}

/// The columns a view writes, in the order of [`SubscriptionView::args`]: `$1` is `id`.
const COLUMNS: [&str; 24] = [
    "id",
    "user_id",
    "customer_id",
    "status",
    "price_id",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "cancel_at",
    "canceled_at",
    "ended_at",
    "trial_start",
    "trial_end",
    "pause_collection",
    "cancellation_reason",
    "source",
    "event_rank",
    "event_id",
    "previous_status",
    "api_version",
    "livemode",
    "account",
    "event_created",
    "updated_at",
];

/// A new row, unless the subscription has one.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    let values: Vec<String> = (1..=COLUMNS.len()).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO subscriptions ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
        COLUMNS.join(", "),
        values.join(", ")
    )
});

/// The stored view replaced whole, but for a user or customer the view does not know.
static REPLACE: LazyLock<String> = LazyLock::new(|| {
    let set: Vec<String> = (1..)
        .zip(COLUMNS)
        .skip(1)
        .map(|(n, column)| match column {
            "user_id" | "customer_id" => format!("{column} = COALESCE(${n}, {column})"),
            _ => format!("{column} = ${n}"),
        })
        .collect();
    format!("UPDATE subscriptions SET {} WHERE id = $1", set.join(", "))
});

const FILL_PARTY: &str = "UPDATE subscriptions SET user_id = COALESCE(user_id, $2), \
     customer_id = COALESCE(customer_id, $3) WHERE id = $1 \
     AND ((user_id IS NULL AND $2 IS NOT NULL) OR (customer_id IS NULL AND $3 IS NOT NULL))";

type StoredVersion = (String, String, i64, i64, Option<String>, Option<String>);

impl SubscriptionView {
    fn args(&self, now_ms: i64) -> Vec<crate::store::Arg> {
        let (v, t) = (&self.version, &self.terms);
        args![
            &self.id,
            self.user_id.as_deref(),
            self.customer_id.as_deref(),
            &v.status,
            t.items.first().and_then(|i| i.price.as_deref()),
            t.current_period_start,
            t.current_period_end,
            i64::from(t.cancel_at_period_end),
            t.cancel_at,
            t.canceled_at,
            t.ended_at,
            t.trial_start,
            t.trial_end,
            t.pause_collection.as_ref().map(Value::to_string),
            t.cancellation_reason.as_deref(),
            v.source.as_str(),
            v.rank,
            &v.event_id,
            v.previous_status.as_deref(),
            self.api_version.as_deref(),
            i64::from(self.livemode),
            self.account.as_deref(),
            v.created,
            now_ms
        ]
    }
}

/// Writes `view` when it supersedes the stored view of its subscription (or none is
/// stored), items included; otherwise only fills in a user or customer still missing.
pub async fn write_subscription(
    tx: &mut StoreTx,
    view: &SubscriptionView,
    now_ms: i64,
) -> Result<Written> {
    if tx.execute(&INSERT, view.args(now_ms)).await? == 1 {
        replace_items(tx, view).await?;
        return Ok(Written::Applied { previous: None });
    }
    let lock = match tx.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    };
    let stored: Option<StoredVersion> = tx
        .fetch_optional(
            &format!(
                "SELECT source, status, event_created, event_rank, event_id, previous_status \
                 FROM subscriptions WHERE id = $1{lock}"
            ),
            args![&view.id],
        )
        .await?;
    let Some((source, status, created, rank, event_id, previous_status)) = stored else {
        return Err(crate::store::Error::Transaction(format!(
            "subscription {} vanished while being written",
            view.id
        )));
    };
    let stored = Version {
        source: Source::parse(&source),
        created,
        rank,
        event_id: event_id.unwrap_or_default(),
        status,
        previous_status,
    };
    if ordering::supersedes(&view.version, &stored) {
        tx.execute(&REPLACE, view.args(now_ms)).await?;
        replace_items(tx, view).await?;
        return Ok(Written::Applied {
            previous: Some(stored.status),
        });
    }
    tx.execute(
        FILL_PARTY,
        args![
            &view.id,
            view.user_id.as_deref(),
            view.customer_id.as_deref()
        ],
    )
    .await?;
    Ok(Written::Superseded)
}

async fn replace_items(tx: &mut StoreTx, view: &SubscriptionView) -> Result<()> {
    if view.version.source == Source::Provisional {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM subscription_items WHERE subscription_id = $1",
        args![&view.id],
    )
    .await?;
    for (position, item) in (0_i64..).zip(&view.terms.items) {
        tx.execute(
            "INSERT INTO subscription_items (subscription_id, position, item_id, price_id, \
             product_id, quantity, current_period_end) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            args![
                &view.id,
                position,
                item.id.as_deref(),
                item.price.as_deref(),
                item.product.as_deref(),
                i64::try_from(item.quantity).unwrap_or(i64::MAX),
                item.current_period_end
            ],
        )
        .await?;
    }
    Ok(())
}

/// Which subscription statuses grant access (`PAYSTEPS_ENTITLED_STATUSES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    statuses: Vec<String>,
}

impl Default for Entitlement {
    /// `active` and `trialing`, the statuses Stripe describes as paid up.
    fn default() -> Self {
        Entitlement {
            statuses: vec!["active".into(), "trialing".into()],
        }
    }
}

impl Entitlement {
    /// Parses a comma-separated list of Stripe statuses; an unknown one is an error.
    pub fn parse(list: &str) -> std::result::Result<Entitlement, String> {
        const KNOWN: [&str; 8] = [
            "active",
            "trialing",
            "past_due",
            "unpaid",
            "paused",
            "incomplete",
            "incomplete_expired",
            "canceled",
        ];
        let mut statuses = Vec::new();
        for status in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !KNOWN.contains(&status) {
                return Err(format!(
                    "{status:?} is not a Stripe subscription status (one of {})",
                    KNOWN.join(", ")
                ));
            }
            if ordering::is_terminal(status) {
                return Err(format!(
                    "{status} subscriptions have ended and cannot entitle"
                ));
            }
            statuses.push(status.to_owned());
        }
        if statuses.is_empty() {
            return Err("no status entitles: name at least one".into());
        }
        Ok(Entitlement { statuses })
    }

    /// Whether a subscription in `status` grants access.
    pub fn entitles(&self, status: &str) -> bool {
        self.statuses.iter().any(|s| s == status)
    }

    /// The statuses that entitle.
    pub fn statuses(&self) -> &[String] {
        &self.statuses
    }
}

/// One item of a subscription, as the entitlement answer lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ItemRow {
    #[serde(skip)]
    subscription_id: String,
    /// `price_…`.
    pub price: Option<String>,
    /// `prod_…`.
    pub product: Option<String>,
    /// Seats or units.
    pub quantity: i64,
}

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: String,
    status: String,
    customer_id: Option<String>,
    current_period_end: Option<i64>,
    trial_end: Option<i64>,
    cancel_at_period_end: i64,
    cancel_at: Option<i64>,
    canceled_at: Option<i64>,
    ended_at: Option<i64>,
    pause_collection: Option<String>,
    cancellation_reason: Option<String>,
    source: String,
    livemode: i64,
    event_created: i64,
}

/// A user's subscription, as the entitlement answer shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserSubscription {
    /// `sub_…`.
    pub id: String,
    /// Stripe's status.
    pub status: String,
    /// Whether the status grants access, by [`Entitlement`].
    pub entitled: bool,
    /// Every item: price, product, quantity.
    pub items: Vec<ItemRow>,
    /// `cus_…`.
    pub customer_id: Option<String>,
    /// End of the current period, in seconds.
    pub current_period_end: Option<i64>,
    /// When the trial ends, in seconds.
    pub trial_end: Option<i64>,
    /// Whether it ends at the end of the period.
    pub cancel_at_period_end: bool,
    /// When it is set to end.
    pub cancel_at: Option<i64>,
    /// When it was canceled.
    pub canceled_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// `pause_collection` as Stripe sent it.
    pub pause_collection: Option<Value>,
    /// Why it was canceled (`cancellation_details.reason`).
    pub cancellation_reason: Option<String>,
    /// `event`, `api` or `provisional` (inferred until a Subscription object arrives).
    pub source: String,
    /// False for test mode.
    pub livemode: bool,
    /// `created` of the event the state comes from, in seconds.
    pub event_created: i64,
}

/// Every subscription of `user_id` on the platform (none of a connected account's),
/// entitling ones first, then the newest.
pub async fn user_subscriptions(
    store: &Store,
    user_id: &str,
    entitlement: &Entitlement,
) -> Result<Vec<UserSubscription>> {
    let rows: Vec<SubscriptionRow> = store
        .fetch_all(
            "SELECT id, status, customer_id, current_period_end, trial_end, \
             cancel_at_period_end, cancel_at, canceled_at, ended_at, pause_collection, \
             cancellation_reason, source, livemode, event_created \
             FROM subscriptions WHERE user_id = $1 AND account IS NULL \
             ORDER BY event_created DESC, id",
            args![user_id],
        )
        .await?;
    let items: Vec<ItemRow> = store
        .fetch_all(
            "SELECT i.subscription_id, i.price_id AS price, i.product_id AS product, i.quantity \
             FROM subscription_items i JOIN subscriptions s ON s.id = i.subscription_id \
             WHERE s.user_id = $1 AND s.account IS NULL ORDER BY i.subscription_id, i.position",
            args![user_id],
        )
        .await?;
    let mut all: Vec<UserSubscription> = rows
        .into_iter()
        .map(|row| UserSubscription {
            entitled: entitlement.entitles(&row.status),
            items: items
                .iter()
                .filter(|i| i.subscription_id == row.id)
                .cloned()
                .collect(),
            id: row.id,
            status: row.status,
            customer_id: row.customer_id,
            current_period_end: row.current_period_end,
            trial_end: row.trial_end,
            cancel_at_period_end: row.cancel_at_period_end != 0,
            cancel_at: row.cancel_at,
            canceled_at: row.canceled_at,
            ended_at: row.ended_at,
            pause_collection: row
                .pause_collection
                .and_then(|p| serde_json::from_str(&p).ok()),
            cancellation_reason: row.cancellation_reason,
            source: row.source,
            livemode: row.livemode != 0,
            event_created: row.event_created,
        })
        .collect();
    // `active` or `trialing` first among the entitling ones, then the newest.
    all.sort_by_key(|s| {
        (
            !s.entitled,
            !ordering::is_live(&s.status),
            std::cmp::Reverse(s.event_created),
        )
    });
    Ok(all)
}
