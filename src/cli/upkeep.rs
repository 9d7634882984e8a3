//! `prune` and `backup`: the operator's upkeep of the database.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{TimeZone, Utc};
use clap::Args;

use crate::engine::system_now_ms;
use crate::retention::{self, Retention};
use crate::store::{self, Store, redact_url};

/// Options of `paysteps prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// SQLite file (or database URL).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "paysteps.db"
    )]
    pub db: String,
    /// Days what ended is kept; 0 keeps the journal for ever.
    #[arg(
        long = "retention-days",
        env = "PAYSTEPS_RETENTION_DAYS",
        default_value = "30",
        allow_hyphen_values = true,
        value_parser = Retention::parse
    )]
    pub retention: Retention,
    /// Count what would be deleted, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `paysteps backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy: a file that does not exist yet.
    pub file: PathBuf,
    /// SQLite file (or database URL) to copy.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "paysteps.db"
    )]
    pub db: String,
}

pub async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    // A mistyped path must not become a new, empty database that "pruned nothing".
    if let Some(path) = store::sqlite_path(&args.db)
        && !path.is_file()
    {
        anyhow::bail!("no SQLite database at {}", path.display());
    }
    let store = Store::connect(&args.db)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&args.db)))?;
    store.migrate().await.context("applying migrations")?;
    let now = system_now_ms();
    let counted = if args.dry_run {
        retention::prunable(&store, args.retention, now).await
    } else {
        retention::prune(&store, args.retention, now).await
    };
    store.close().await;
    let pruned = counted.context("pruning the database")?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    match args.retention.cutoff(now) {
        Some(cutoff) => println!(
            "{} {verb}, for what ended before {} (retention {}):",
            redact_url(&args.db),
            Utc.timestamp_millis_opt(cutoff)
                .single()
                .map_or_else(|| cutoff.to_string(), |t| t.to_rfc3339()),
            args.retention
        ),
        None => println!(
            "{} {verb} expired sessions only (retention: {}):",
            redact_url(&args.db),
            args.retention
        ),
    }
    print_counts(&pruned);
    Ok(())
}

fn print_counts(pruned: &store::Pruned) {
    for (kind, count) in pruned.kinds() {
        println!("  {kind:<20}{count}");
    }
    if pruned.payloads > 0 {
        println!(
            "  (a Stripe event keeps its id without its payload: a redelivery stays a duplicate)"
        );
    }
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let copy = store::backup(&args.db, &args.file).await?;
    println!(
        "backed up {} to {} ({} bytes: {} events, {} runs)",
        redact_url(&args.db),
        args.file.display(),
        copy.bytes,
        copy.events,
        copy.runs
    );
    Ok(())
}
