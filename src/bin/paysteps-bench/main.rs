//! `paysteps-bench`: starts paysteps as a separate process (`dev` on a fresh SQLite file, or
//! `serve` on a fresh PostgreSQL schema), drives it with correctly signed, unique Stripe
//! events over loopback HTTP, waits for every run to finish, prints throughput, latency
//! and cost, and verifies that each accepted event was processed exactly once. Exits 1
//! when anything is wrong.

mod events;
mod history;
mod load;
mod report;
mod server;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use paysteps::testing::store::Store;
use paysteps::testing::stripe::signer;
use rand::Rng;

use events::Mix;
use load::Pace;
use report::Report;
use server::{Cluster, Database, Launch, Usage};

#[derive(Debug, Parser)]
#[command(
    name = "paysteps-bench",
    about = "Drive a real paysteps server with signed Stripe events and measure it"
)]
struct Args {
    /// Events sent in total [default: 20000, or 2000 with --smoke].
    #[arg(long)]
    events: Option<usize>,
    /// Concurrent keep-alive HTTP connections [default: 32, or 8 with --smoke].
    #[arg(long)]
    connections: Option<usize>,
    /// Offered load in events/s (open loop). Without it, each connection sends its next
    /// event as soon as the last is answered (closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// At most this many events accepted whose runs have not finished (an end-to-end
    /// closed loop; the bench polls the database every millisecond to see runs finish).
    #[arg(long)]
    in_flight: Option<usize>,
    /// Event type sent.
    #[arg(long, value_enum, default_value_t = Mix::Checkout)]
    mix: Mix,
    /// A PostgreSQL server (`postgres://…`) to run `paysteps serve` on, in a fresh schema
    /// dropped afterwards. Default: `paysteps dev` on a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// paysteps processes sharing the database (PostgreSQL only); connections are spread
    /// evenly over them.
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// PAYSTEPS_WORKERS for each process (default: the server's own default).
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds allowed for sending every event and finishing every run.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Directory for the SQLite file and server logs (default: a fresh one in the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The paysteps binary (default: `paysteps` next to this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// A small run for CI: 2,000 events over 8 connections unless given otherwise.
    #[arg(long)]
    smoke: bool,
    /// Processed events (each with its run and four steps) already stored when the load
    /// starts, to measure how cost grows with the database.
    #[arg(long, default_value_t = 0)]
    history: usize,
    /// Requests to the dashboard's API (runs by status, a run with its steps) after the
    /// load, timed one at a time [default: 200 with --history, else 0].
    #[arg(long)]
    api_probes: Option<usize>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("paysteps-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolved settings of one bench.
struct Plan {
    events: usize,
    connections: usize,
    pace: Pace,
    timeout: Duration,
    tag: String,
    bin: PathBuf,
    dir: PathBuf,
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let plan = plan(&args)?;
    std::fs::create_dir_all(&plan.dir)
        .with_context(|| format!("creating {}", plan.dir.display()))?;
    let database = match &args.database_url {
        Some(url) => Database::postgres(url, &plan.tag).await?,
        None => Database::sqlite(&plan.dir),
    };
    let result = measure(&args, &plan, &database).await;
    if let Err(err) = database.drop_schema().await {
        eprintln!("paysteps-bench: warning: {err:#}");
    }
    match &result {
        Ok(true) if args.dir.is_none() => {
            if let Err(err) = std::fs::remove_dir_all(&plan.dir) {
                eprintln!(
                    "paysteps-bench: warning: removing {}: {err}",
                    plan.dir.display()
                );
            }
        }
        Ok(true) => {}
        _ => eprintln!("paysteps-bench: server logs kept in {}", plan.dir.display()),
    }
    result
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let (default_events, default_connections) = if args.smoke { (2_000, 8) } else { (20_000, 32) };
    let events = args.events.unwrap_or(default_events);
    let connections = args.connections.unwrap_or(default_connections);
    if events == 0 || connections == 0 || args.processes == 0 {
        bail!("--events, --connections and --processes must be at least 1");
    }
    if args.processes > 1 && args.database_url.is_none() {
        bail!("--processes above 1 needs --database-url: SQLite serves one process");
    }
    if args.in_flight == Some(0) {
        bail!("--in-flight must be at least 1");
    }
    if connections < args.processes {
        bail!("--connections must be at least --processes, so every process gets load");
    }
    let pace = match args.rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => Pace::Open { rate },
        Some(_) => bail!("--rate must be a positive number of events per second"),
        None => Pace::Closed,
    };
    let bin = match &args.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .with_file_name("paysteps"),
    };
    if !bin.is_file() {
        bail!(
            "no paysteps binary at {} (build both with `cargo build --release --bins`)",
            bin.display()
        );
    }
    let tag: String = (0..8)
        .map(|_| {
            let i = rand::rng().random_range(0..36u8);
            char::from(if i < 10 { b'0' + i } else { b'a' + i - 10 })
        })
        .collect();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("paysteps-bench-{tag}")));
    Ok(Plan {
        events,
        connections,
        pace,
        timeout: Duration::from_secs(args.timeout),
        tag,
        bin,
        dir,
    })
}

async fn measure(args: &Args, plan: &Plan, database: &Database) -> anyhow::Result<bool> {
    let secret = signer::generate_secret();
    let url = database.url();
    let backend = if database.is_postgres() {
        format!("PostgreSQL, {} × `paysteps serve`", args.processes)
    } else {
        "SQLite, `paysteps dev`".to_owned()
    };
    if args.history > 0 {
        let store = Store::connect(&url).await.context("opening the database")?;
        store.migrate().await.context("migrating the database")?;
        let took = history::prefill(&store, args.history).await?;
        store.close().await;
        eprintln!(
            "paysteps-bench: {} events of history stored in {:.1} s",
            args.history,
            took.as_secs_f64()
        );
    }
    eprintln!(
        "paysteps-bench: starting {backend} in {}",
        plan.dir.display()
    );
    let mut cluster = Cluster::start(
        &Launch {
            bin: &plan.bin,
            database,
            secret: &secret,
            workers: args.workers,
            dir: &plan.dir,
        },
        args.processes,
    )
    .await?;
    let pids = cluster.pids();
    eprintln!("paysteps-bench: server pid(s) {pids:?}");
    let store = Store::connect(&url)
        .await
        .context("opening the database to read the results")?;
    eprintln!(
        "paysteps-bench: building and signing {} events",
        plan.events
    );
    let mut batch = events::build(args.mix, plan.events, &plan.tag, &secret)?;
    let expected = std::mem::take(&mut batch.expected);

    let server_usage = || -> anyhow::Result<Usage> {
        pids.iter().try_fold(Usage::default(), |sum, pid| {
            Ok(sum.add(server::usage(&pid.to_string())?))
        })
    };
    let local_postgres = database.is_postgres()
        && [
            "@127.0.0.1",
            "@localhost",
            "@[::1]",
            "//127.0.0.1",
            "//localhost",
        ]
        .iter()
        .any(|host| url.contains(host));
    let in_flight = args.in_flight.map(|limit| (limit, store.clone()));
    let urls = cluster.urls();
    let server_before = server_usage()?;
    let client_before = server::usage("self")?;
    let postgres_before = local_postgres.then(server::postgres_usage);
    let wal_before = server::wal_bytes(&store).await;
    let batches_before = server::commit_batches(&urls).await;

    eprintln!("paysteps-bench: sending");
    let start = Instant::now();
    let deadline = start + plan.timeout;
    let outcome = load::run(
        batch,
        load::Settings {
            urls: &urls,
            connections: plan.connections,
            pace: plan.pace,
            secret: &secret,
            deadline,
            in_flight,
        },
    )
    .await?;
    eprintln!("paysteps-bench: waiting for the runs");
    let pending = verify::wait_idle(&store, deadline).await?;
    let total_elapsed = start.elapsed();

    let server = server_usage()?.since(server_before);
    let client = server::usage("self")?.since(client_before);
    let postgres =
        postgres_before.map(|before| server::postgres_delta(&before, &server::postgres_usage()));
    let wal_bytes = match (wal_before, server::wal_bytes(&store).await) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let peak_rss_kib = pids
        .iter()
        .map(|pid| server::peak_rss_kib(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let batches = match (
        batches_before,
        server::commit_batches(&cluster.urls()).await,
    ) {
        (Some(before), Some(after)) => Some(after.since(before)),
        _ => None,
    };
    let runs = verify::run_timings(&store, args.mix.function()).await?;
    let probes = match args
        .api_probes
        .unwrap_or(if args.history > 0 { 200 } else { 0 })
    {
        0 => None,
        n => Some(history::probe(&urls[0], server::DASHBOARD_TOKEN, args.history, n).await?),
    };
    let mut problems = Vec::new();
    if pending > 0 {
        problems.push(format!("{pending} runs still pending after --timeout"));
    }
    problems.extend(verify::verify(&store, args.mix, &expected, &outcome).await?);
    store.close().await;
    problems.extend(cluster.stop());

    let mut pace = match plan.pace {
        Pace::Closed => "closed loop".to_owned(),
        Pace::Open { rate } => format!("open loop at {rate} events/s"),
    };
    if let Some(limit) = args.in_flight {
        pace.push_str(&format!(
            ", at most {limit} events in flight to run completion"
        ));
    }
    let ack_us = sorted_accepted(&outcome, |s| s.latency_us);
    let service_us = sorted_accepted(&outcome, |s| s.service_us);
    Report {
        title: format!(
            "paysteps-bench: {backend}; {pace}; {} connections; {} {} events",
            plan.connections,
            plan.events,
            args.mix.event_type()
        ),
        open_loop: matches!(plan.pace, Pace::Open { .. }),
        sent: outcome.samples.len(),
        unsent: outcome.unsent,
        accepted: outcome.accepted(),
        failures: outcome.failures(),
        load_elapsed: outcome.elapsed(),
        ack_us,
        service_us,
        function: args.mix.function(),
        runs,
        pending,
        total_elapsed,
        server,
        processes: pids.len(),
        postgres,
        wal_bytes,
        client,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        peak_rss_kib,
        batches,
    }
    .print();
    if args.history > 0 {
        println!(
            "  history              {} events stored before the load",
            args.history
        );
    }
    if let Some(probes) = &probes {
        probes.print();
    }

    if problems.is_empty() {
        println!(
            "  verified             every one of {} events accepted once, its run completed, its business rows written once",
            expected.len()
        );
        Ok(true)
    } else {
        println!("  verification FAILED");
        for problem in &problems {
            println!("    - {problem}");
        }
        Ok(false)
    }
}

/// One figure of every accepted event, sorted.
fn sorted_accepted(outcome: &load::Outcome, figure: impl Fn(&load::Sample) -> u64) -> Vec<u64> {
    let mut values: Vec<u64> = outcome
        .samples
        .iter()
        .filter(|s| s.failure.is_none())
        .map(figure)
        .collect();
    values.sort_unstable();
    values
}
