//! Which of two views of one subscription is the newer, without asking Stripe.
//!
//! Stripe does not deliver events in order, and an event's `created` has one-second
//! resolution: a Checkout makes `customer.subscription.created` (incomplete) and
//! `.updated` (active) in the same second. The rules, in order:
//!
//! 1. A snapshot (a Subscription object, from an event or the API) beats a provisional
//!    view (inferred from a checkout or invoice event), whatever their times.
//! 2. `canceled` and `incomplete_expired` are terminal: a terminal view beats a live one,
//!    and a live one never replaces a terminal one (a canceled subscription is never
//!    revived).
//! 3. The later `created` wins.
//! 4. In the same second: nothing returns to `incomplete`; a view whose
//!    `previous_attributes.status` is the other's status follows it (unless each names
//!    the other's); a higher event rank
//!    wins (API > `deleted` > `updated` > `created`); then the greater event id, so that
//!    any delivery order ends in the same state.

use serde::{Deserialize, Serialize};

/// Where a view of a subscription comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A `customer.subscription.*` event's Subscription object.
    Event,
    /// The Subscription as retrieved from the Stripe API.
    Api,
    /// Inferred from a checkout or invoice event, until a snapshot arrives.
    Provisional,
}

impl Source {
    /// As stored in `subscriptions.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Event => "event",
            Source::Api => "api",
            Source::Provisional => "provisional",
        }
    }

    /// Reads a stored `subscriptions.source`; anything unknown is an event snapshot.
    pub fn parse(text: &str) -> Source {
        match text {
            "api" => Source::Api,
            "provisional" => Source::Provisional,
            _ => Source::Event,
        }
    }

    fn is_snapshot(self) -> bool {
        !matches!(self, Source::Provisional)
    }
}

/// What orders one view of a subscription against another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Where the view comes from.
    pub source: Source,
    /// The event's `created` (or the retrieval time for the API), in seconds.
    pub created: i64,
    /// The event type's rank: see [`rank`].
    pub rank: i64,
    /// The event's id (empty for the API).
    pub event_id: String,
    /// The subscription's status in this view.
    pub status: String,
    /// `data.previous_attributes.status`, when the event changed the status.
    pub previous_status: Option<String>,
}

/// The rank of an event type among views of the same second.
pub fn rank(event_type: &str) -> i64 {
    match event_type {
        "customer.subscription.created" => 1,
        "customer.subscription.deleted" => 3,
        t if t.starts_with("customer.subscription.") => 2,
        _ => 0,
    }
}

/// The rank of a view retrieved from the Stripe API.
pub const API_RANK: i64 = 4;

/// Whether a subscription in `status` is paid up, as Stripe describes `active` and
/// `trialing` (which statuses entitle is the business's setting, apart from this).
pub fn is_live(status: &str) -> bool {
    matches!(status, "active" | "trialing")
}

/// Whether a subscription in `status` has ended for good.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "canceled" | "incomplete_expired")
}

/// Whether `incoming` is to replace `stored` (see the module's rules).
pub fn supersedes(incoming: &Version, stored: &Version) -> bool {
    match (incoming.source.is_snapshot(), stored.source.is_snapshot()) {
        (true, false) => return true,
        (false, true) => return false,
        _ => {}
    }
    match (is_terminal(&incoming.status), is_terminal(&stored.status)) {
        (true, false) => return true,
        (false, true) => return false,
        _ => {}
    }
    if incoming.created != stored.created {
        return incoming.created > stored.created;
    }
    match (
        incoming.status == "incomplete",
        stored.status == "incomplete",
    ) {
        (true, false) => return false,
        (false, true) => return true,
        _ => {}
    }
    if incoming.status != stored.status {
        let follows = incoming.previous_status.as_deref() == Some(stored.status.as_str());
        let followed = stored.previous_status.as_deref() == Some(incoming.status.as_str());
        if follows != followed {
            return follows;
        }
    }
    if incoming.rank != stored.rank {
        return incoming.rank > stored.rank;
    }
    incoming.event_id >= stored.event_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(source: Source, created: i64, event_type: &str, id: &str, status: &str) -> Version {
        Version {
            source,
            created,
            rank: rank(event_type),
            event_id: id.to_owned(),
            status: status.to_owned(),
            previous_status: None,
        }
    }

    fn event(created: i64, event_type: &str, id: &str, status: &str) -> Version {
        view(Source::Event, created, event_type, id, status)
    }

    /// Applies `views` in order, as deliveries would, and answers the survivor.
    fn survivor(views: &[Version]) -> Version {
        let mut stored = views[0].clone();
        for v in &views[1..] {
            if supersedes(v, &stored) {
                stored = v.clone();
            }
        }
        stored
    }

    /// Every order of `views` ends with the same survivor, which is returned.
    fn same_in_every_order(views: &[Version]) -> Version {
        let mut order: Vec<usize> = (0..views.len()).collect();
        let first = survivor(views);
        // Heap's algorithm over the indices.
        fn permute(k: usize, order: &mut Vec<usize>, views: &[Version], first: &Version) {
            if k == 1 {
                let applied: Vec<Version> = order.iter().map(|&i| views[i].clone()).collect();
                assert_eq!(&survivor(&applied), first, "order {order:?}");
                return;
            }
            for i in 0..k {
                permute(k - 1, order, views, first);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                order.swap(j, k - 1);
            }
        }
        let n = order.len();
        permute(n, &mut order, views, &first);
        first
    }

    #[test]
    fn a_checkout_of_one_second_ends_active_in_either_order() {
        let created = event(100, "customer.subscription.created", "evt_b", "incomplete");
        let mut updated = event(100, "customer.subscription.updated", "evt_a", "active");
        updated.previous_status = Some("incomplete".into());
        assert_eq!(same_in_every_order(&[created, updated]).status, "active");
    }

    #[test]
    fn two_updates_of_one_second_chain_through_their_previous_status() {
        let mut past_due = event(100, "customer.subscription.updated", "evt_z", "past_due");
        past_due.previous_status = Some("active".into());
        let mut active = event(100, "customer.subscription.updated", "evt_a", "active");
        active.previous_status = Some("past_due".into());
        // Each names the other as its previous status: the id decides, in every order.
        let both = same_in_every_order(&[past_due.clone(), active.clone()]);
        assert_eq!(both.event_id, "evt_z");

        let mut unpaid = event(100, "customer.subscription.updated", "evt_0", "unpaid");
        unpaid.previous_status = Some("past_due".into());
        past_due.previous_status = Some("active".into());
        let chained = same_in_every_order(&[past_due, unpaid]);
        assert_eq!(
            chained.status, "unpaid",
            "unpaid follows past_due despite its id"
        );
    }

    #[test]
    fn a_canceled_subscription_is_never_revived() {
        let deleted = event(100, "customer.subscription.deleted", "evt_d", "canceled");
        let later = event(200, "customer.subscription.updated", "evt_u", "active");
        let provisional = view(Source::Provisional, 300, "invoice.paid", "evt_i", "active");
        assert_eq!(
            same_in_every_order(&[deleted, later, provisional]).status,
            "canceled"
        );
    }

    #[test]
    fn a_snapshot_beats_a_provisional_view_and_newer_beats_older() {
        let provisional = view(Source::Provisional, 500, "invoice.paid", "evt_p", "active");
        let old = event(100, "customer.subscription.created", "evt_c", "trialing");
        let newer = event(200, "customer.subscription.updated", "evt_u", "active");
        let first = view(
            Source::Provisional,
            90,
            "checkout.session.completed",
            "evt_q",
            "active",
        );
        let survivor = same_in_every_order(&[provisional, old, newer, first]);
        assert_eq!(survivor.event_id, "evt_u");
    }

    #[test]
    fn ranks_break_ties_and_nothing_returns_to_incomplete() {
        let updated = event(100, "customer.subscription.updated", "evt_1", "past_due");
        let deleted = event(100, "customer.subscription.deleted", "evt_0", "unpaid");
        assert_eq!(same_in_every_order(&[updated, deleted]).event_id, "evt_0");
        let created = event(100, "customer.subscription.created", "evt_9", "incomplete");
        let trialing = event(100, "customer.subscription.created", "evt_1", "trialing");
        assert_eq!(same_in_every_order(&[created, trialing]).status, "trialing");
        assert_eq!(rank("customer.subscription.paused"), 2);
        assert_eq!(Source::parse(Source::Api.as_str()), Source::Api);
    }
}
