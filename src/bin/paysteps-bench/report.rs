//! The figures a bench prints.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::server::{Batches, TICKS_PER_SEC, Usage};
use crate::verify::RunTimings;

pub struct Report {
    pub title: String,
    pub open_loop: bool,
    pub sent: usize,
    pub unsent: usize,
    pub accepted: usize,
    pub failures: BTreeMap<String, usize>,
    /// From the start of the load to the last acknowledgement.
    pub load_elapsed: Duration,
    /// Acknowledgement latencies of accepted events (from the scheduled time), sorted, µs.
    pub ack_us: Vec<u64>,
    /// The same from the actual send time, sorted, µs.
    pub service_us: Vec<u64>,
    pub function: &'static str,
    pub runs: RunTimings,
    /// Runs still queued, running or sleeping when the timeout passed.
    pub pending: i64,
    /// From the start of the load until no run was pending.
    pub total_elapsed: Duration,
    pub server: Usage,
    pub processes: usize,
    pub postgres: Option<Usage>,
    /// WAL PostgreSQL generated over the load (`pg_stat_wal`), in bytes.
    pub wal_bytes: Option<u64>,
    pub client: Usage,
    pub cores: usize,
    pub peak_rss_kib: Vec<u64>,
    /// Commits and transactions between the start of the load and the end of the runs.
    pub batches: Option<Batches>,
}

/// The `q` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

impl Report {
    pub fn print(&self) {
        let per_k = |x: f64| x * 1000.0 / self.accepted.max(1) as f64;
        println!("{}", self.title);
        let failures = if self.failures.is_empty() {
            "none".to_owned()
        } else {
            let parts: Vec<String> = self
                .failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            parts.join(", ")
        };
        println!(
            "  sent                 {} events in {:.2} s ({} unsent at the timeout); accepted {}; not accepted: {failures}",
            self.sent,
            self.load_elapsed.as_secs_f64(),
            self.unsent,
            self.accepted,
        );
        println!(
            "  accepted             {:.0} events/s",
            self.accepted as f64 / self.load_elapsed.as_secs_f64().max(1e-9)
        );
        let from = if self.open_loop {
            "from the scheduled send time"
        } else {
            "from the send time"
        };
        println!(
            "  ack latency          p50 {}  p99 {}  p99.9 {}  max {}  ({from})",
            ms(percentile(&self.ack_us, 0.50)),
            ms(percentile(&self.ack_us, 0.99)),
            ms(percentile(&self.ack_us, 0.999)),
            ms(self.ack_us.last().copied().unwrap_or(0)),
        );
        if self.open_loop {
            println!(
                "  service time         p50 {}  p99 {}  p99.9 {}  (from the actual send time)",
                ms(percentile(&self.service_us, 0.50)),
                ms(percentile(&self.service_us, 0.99)),
                ms(percentile(&self.service_us, 0.999)),
            );
        }
        let span = self.runs.span_ms as f64 / 1000.0;
        println!(
            "  runs completed       {:.0} runs/s  ({} {} runs completed in {span:.2} s, first accept to last end; {} still pending)",
            self.runs.completed as f64 / span.max(1e-9),
            self.runs.completed,
            self.function,
            self.pending,
        );
        let lat = &self.runs.latencies_ms;
        println!(
            "  accepted → completed p50 {} ms  p99 {} ms  max {} ms  (runs.ended_at - created_at)",
            percentile(lat, 0.50),
            percentile(lat, 0.99),
            lat.last().copied().unwrap_or(0),
        );
        let window = self.total_elapsed.as_secs_f64().max(1e-9);
        let share = |u: Usage| 100.0 * u.cpu_secs() / (window * self.cores as f64);
        println!(
            "  server CPU           {:.3} s per 1,000 events  ({:.2} s over {} process(es), {:.0}% of {} cores for {window:.2} s; CLK_TCK assumed {TICKS_PER_SEC})",
            per_k(self.server.cpu_secs()),
            self.server.cpu_secs(),
            self.processes,
            share(self.server),
            self.cores,
        );
        if let Some(pg) = self.postgres {
            println!(
                "  PostgreSQL CPU       {:.3} s per 1,000 events  ({:.2} s, {:.0}% of {} cores; every local postgres process)",
                per_k(pg.cpu_secs()),
                pg.cpu_secs(),
                share(pg),
                self.cores,
            );
        }
        println!(
            "  bench client CPU     {:.3} s per 1,000 events  ({:.2} s, {:.0}% of {} cores)",
            per_k(self.client.cpu_secs()),
            self.client.cpu_secs(),
            share(self.client),
            self.cores,
        );
        let mut disk = format!(
            "{:.2} MiB per 1,000 events by paysteps",
            per_k(self.server.write_bytes as f64) / (1024.0 * 1024.0)
        );
        if let Some(pg) = self.postgres {
            disk.push_str(&format!(
                ", {:.2} MiB by PostgreSQL",
                per_k(pg.write_bytes as f64) / (1024.0 * 1024.0)
            ));
        }
        println!("  disk writes          {disk}  (/proc/<pid>/io write_bytes)");
        if let Some(wal) = self.wal_bytes {
            println!(
                "  PostgreSQL WAL       {:.2} MiB per 1,000 events  (pg_stat_wal, the whole server)",
                per_k(wal as f64) / (1024.0 * 1024.0)
            );
        }
        if let Some(b) = self.batches.filter(|b| b.commits > 0.0) {
            println!(
                "  database commits     {:.0} commits ({:.0}/s), {:.1} transactions each, {:.1} per event  (server /metrics)",
                b.commits,
                b.commits / window,
                b.transactions / b.commits,
                b.transactions / self.accepted.max(1) as f64,
            );
        }
        let sum: u64 = self.peak_rss_kib.iter().sum();
        let max = self.peak_rss_kib.iter().copied().max().unwrap_or(0);
        println!(
            "  server peak RSS      {:.1} MiB summed, {:.1} MiB the largest process (VmHWM)",
            sum as f64 / 1024.0,
            max as f64 / 1024.0
        );
    }
}
