//! Process metrics, served as Prometheus (OpenMetrics) text on `GET /metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the event counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Where events came from: `api`, `stripe`, `cron`, `internal`.
    pub source: String,
}

/// Labels of the rejected-request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The error code the request was answered with (`signature_mismatch`…).
    pub reason: String,
}

/// Labels of the per-function histograms.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// The function's id.
    pub function: String,
}

/// Labels of the run counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// The function's id.
    pub function: String,
    /// The status the run reached.
    pub status: String,
}

/// Labels of the open-runs gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// A run status that has not ended (`queued`, `running`…).
    pub status: String,
}

/// Every metric of one process. Cheap to clone: clones share their values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// `paysteps_events_received_total`: events accepted and stored, by source.
    pub events_received: Family<SourceLabels, Counter>,
    /// `paysteps_events_duplicate_total`: deliveries answered as duplicates, by source.
    pub events_duplicate: Family<SourceLabels, Counter>,
    /// `paysteps_events_rejected_total`: requests rejected before anything was stored, by reason.
    pub events_rejected: Family<ReasonLabels, Counter>,
    /// Runs that reached a final status (or were parked) in this process.
    pub runs: Family<RunLabels, Counter>,
    /// `paysteps_step_duration_seconds`: time a step attempt took, by function.
    pub step_seconds: Family<FunctionLabels, Histogram>,
    /// From the run's creation (its event's commit) to its completion.
    pub run_latency_seconds: Family<FunctionLabels, Histogram>,
    /// Runs waiting or in flight now, by status, each counted up to 100,000; set when
    /// scraped.
    pub runs_open: Family<StatusLabels, Gauge>,
    /// Age of the oldest queued run that is due, in milliseconds; set when scraped.
    pub oldest_queued_ms: Gauge,
    /// Transactions committed together: by the SQLite writer, or by one of PostgreSQL's
    /// batched statements.
    pub commit_batch_size: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, every value at zero.
    pub fn new() -> Metrics {
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            events_received: Family::default(),
            events_duplicate: Family::default(),
            events_rejected: Family::default(),
            runs: Family::default(),
            step_seconds: Family::new_with_constructor(seconds),
            run_latency_seconds: Family::new_with_constructor(seconds),
            runs_open: Family::default(),
            oldest_queued_ms: Gauge::default(),
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
        };
        let mut registry = Registry::with_prefix("paysteps");
        registry.register(
            "events_received",
            "Events accepted and stored, by source",
            m.events_received.clone(),
        );
        registry.register(
            "events_duplicate",
            "Deliveries answered as duplicates, by source",
            m.events_duplicate.clone(),
        );
        registry.register(
            "events_rejected",
            "Requests rejected before anything was stored, by reason",
            m.events_rejected.clone(),
        );
        registry.register(
            "runs",
            "Runs that ended or were parked in this process, by function and status",
            m.runs.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time a step attempt took, by function",
            m.step_seconds.clone(),
        );
        registry.register(
            "run_latency_seconds",
            "From event accepted to run completed, by function",
            m.run_latency_seconds.clone(),
        );
        registry.register(
            "runs_open",
            "Runs not yet finished, by status",
            m.runs_open.clone(),
        );
        registry.register(
            "oldest_queued_run_age_milliseconds",
            "How long the oldest due queued run has waited",
            m.oldest_queued_ms.clone(),
        );
        registry.register(
            "db_commit_batch_size",
            "Transactions committed together by one database commit",
            m.commit_batch_size.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a request rejected with error code `reason`.
    pub fn rejected(&self, reason: &str) {
        self.events_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a run of `function` that reached `status`.
    pub fn run_ended(&self, function: &str, status: &str) {
        self.runs
            .get_or_create(&RunLabels {
                function: function.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }
}
