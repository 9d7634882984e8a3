//! What a payment's refunds and disputes amount to, whatever order their events arrive
//! in.
//!
//! A refund's status is its newest event's; in the same second a later stage wins
//! (`pending` < `succeeded` < `failed`/`canceled`), since a refund fails or is canceled
//! after it was made. A dispute's status likewise (`needs_response` < `under_review` <
//! closed), and a closed dispute (`won`, `lost`, `warning_closed`, `prevented`) never
//! reopens.
//!
//! How much of a payment is refunded comes from two kinds of report: the refunds
//! themselves (`refund.*` events, and the list on a charge before API version
//! 2022-11-15), and the charge's cumulative `amount_refunded` as of its newest
//! `charge.*` event, which may count refunds no stored event describes. See
//! [`refunded`].

/// Where a refund or dispute stands, for ordering two reports of the same second.
pub fn refund_rank(status: &str) -> i64 {
    match status {
        "failed" | "canceled" => 3,
        "succeeded" => 2,
        _ => 1,
    }
}

/// A refund that still takes money back (pending or done); a failed or canceled one
/// gave it back.
pub fn refund_is_live(status: &str) -> bool {
    !matches!(status, "failed" | "canceled")
}

/// See [`refund_rank`].
pub fn dispute_rank(status: &str) -> i64 {
    if dispute_is_closed(status) {
        3
    } else if status.ends_with("under_review") {
        2
    } else {
        1
    }
}

/// A dispute that is over: it never reopens.
pub fn dispute_is_closed(status: &str) -> bool {
    matches!(status, "won" | "lost" | "warning_closed" | "prevented")
}

/// One stored refund, as [`refunded`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundFact {
    /// In the currency's minor unit.
    pub amount: i64,
    /// When the refund was made.
    pub created: i64,
    /// Whether its newest status still takes the money.
    pub live: bool,
    /// `created` of the event that gave its status.
    pub status_as_of: i64,
}

/// The charge's `amount_refunded` as of the charge event created at `as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeFigure {
    /// The charge's `amount_refunded`.
    pub amount_refunded: i64,
    /// `created` of the event that gave it.
    pub as_of: i64,
}

/// How much of a payment is refunded now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refunded {
    /// The total.
    pub amount: i64,
    /// The part that no stored refund accounts for (dated by the charge's figure).
    pub unattributed: i64,
}

/// The refunded amount from the refunds known and the charge's newest figure.
///
/// The figure counts every refund made by its time that was still live then. So the
/// total is the figure, less refunds it counted that have failed since, plus refunds
/// made after it that are live. Refunds the figure counts but no stored event describes
/// are the unattributed part. Without a figure, the total is the live refunds.
pub fn refunded(charge: Option<ChargeFigure>, refunds: &[RefundFact]) -> Refunded {
    let live: i64 = refunds.iter().filter(|r| r.live).map(|r| r.amount).sum();
    let Some(figure) = charge else {
        return Refunded {
            amount: live,
            unattributed: 0,
        };
    };
    let counted_by_figure: i64 = refunds
        .iter()
        .filter(|r| r.created <= figure.as_of && (r.live || r.status_as_of > figure.as_of))
        .map(|r| r.amount)
        .sum();
    let unattributed = (figure.amount_refunded - counted_by_figure).max(0);
    Refunded {
        amount: unattributed + live,
        unattributed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refund(amount: i64, created: i64, live: bool, status_as_of: i64) -> RefundFact {
        RefundFact {
            amount,
            created,
            live,
            status_as_of,
        }
    }

    fn figure(amount_refunded: i64, as_of: i64) -> Option<ChargeFigure> {
        Some(ChargeFigure {
            amount_refunded,
            as_of,
        })
    }

    #[test]
    fn refunds_alone_count_while_live() {
        let both = [refund(300, 10, true, 10), refund(200, 20, false, 30)];
        assert_eq!(refunded(None, &both).amount, 300);
        assert_eq!(refunded(None, &[]), Refunded::default());
    }

    #[test]
    fn the_charge_figure_counts_refunds_no_event_described() {
        let r = refunded(figure(800, 100), &[refund(300, 90, true, 90)]);
        assert_eq!(
            r,
            Refunded {
                amount: 800,
                unattributed: 500
            }
        );
        assert_eq!(
            refunded(figure(800, 100), &[]),
            Refunded {
                amount: 800,
                unattributed: 800
            }
        );
    }

    #[test]
    fn a_refund_after_the_figure_adds_and_a_failure_after_it_gives_back() {
        // Refund A (500) at 100 counted by the figure; B (300) made after it.
        let facts = [refund(500, 100, true, 100), refund(300, 200, true, 200)];
        assert_eq!(refunded(figure(500, 100), &facts).amount, 800);
        // A fails at 300: the figure of 100 still counts it, the total does not.
        let failed = [refund(500, 100, false, 300), refund(300, 200, true, 200)];
        assert_eq!(
            refunded(figure(500, 100), &failed),
            Refunded {
                amount: 300,
                unattributed: 0
            }
        );
        // A newer figure (after the failure) agrees.
        assert_eq!(refunded(figure(300, 300), &failed).amount, 300);
        // A failure the figure already left out is not taken off twice.
        let failed_before = [refund(500, 100, false, 150)];
        assert_eq!(refunded(figure(0, 200), &failed_before).amount, 0);
    }

    #[test]
    fn a_full_refund_reported_both_ways_counts_once() {
        let r = refunded(figure(1099, 1001), &[refund(1099, 1000, true, 1000)]);
        assert_eq!(
            r,
            Refunded {
                amount: 1099,
                unattributed: 0
            }
        );
    }

    #[test]
    fn later_stages_win_within_a_second_and_closed_disputes_stay_closed() {
        assert!(refund_rank("failed") > refund_rank("succeeded"));
        assert!(refund_rank("succeeded") > refund_rank("pending"));
        assert!(!refund_is_live("canceled") && refund_is_live("requires_action"));
        assert!(dispute_rank("lost") > dispute_rank("under_review"));
        assert!(dispute_rank("warning_under_review") > dispute_rank("warning_needs_response"));
        assert!(dispute_is_closed("won") && !dispute_is_closed("needs_response"));
    }
}
