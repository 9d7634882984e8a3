//! `prune` and `backup`: the operator's upkeep of the database.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{TimeZone, Utc};
use clap::Args;

use super::DbArgs;
use crate::engine::system_now_ms;
use crate::retention::{self, Pruned, Retention};
use crate::store::{self, Store, redact_url};

/// Options of `paysteps prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The database to prune.
    #[command(flatten)]
    pub database: DbArgs,
    /// Days what ended is kept; 0 keeps the journal for ever.
    #[arg(
        long = "retention-days",
        env = "PAYSTEPS_RETENTION_DAYS",
        default_value = "30",
        allow_hyphen_values = true,
        value_parser = Retention::parse
    )]
    #[doc(hidden)]
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
    /// The database to copy.
    #[command(flatten)]
    pub database: DbArgs,
}

pub async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    // A mistyped path must not become a new, empty database that "pruned nothing".
    if let Some(path) = store::sqlite_path(&args.database.db)
        && !path.is_file()
    {
        anyhow::bail!("no SQLite database at {}", path.display());
    }
    let store = Store::connect(&args.database.db)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&args.database.db)))?;
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
            redact_url(&args.database.db),
            Utc.timestamp_millis_opt(cutoff)
                .single()
                .map_or_else(|| cutoff.to_string(), |t| t.to_rfc3339()),
            args.retention
        ),
        None => println!(
            "{} {verb} expired sessions only (retention: {}):",
            redact_url(&args.database.db),
            args.retention
        ),
    }
    print_counts(&pruned);
    Ok(())
}

fn print_counts(pruned: &Pruned) {
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
    let copy = store::backup(&args.database.db, &args.file).await?;
    println!(
        "backed up {} to {} ({} bytes: {} events, {} runs)",
        redact_url(&args.database.db),
        args.file.display(),
        copy.bytes,
        copy.events,
        copy.runs
    );
    Ok(())
}
