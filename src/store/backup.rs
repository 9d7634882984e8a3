//! A consistent copy of a live SQLite database, made with `VACUUM INTO` from a read
//! transaction: writers carry on while it runs, and the copy is the database as of
//! the moment the copy began.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

/// Why a backup was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database is PostgreSQL, which has its own tools.
    #[error(
        "paysteps backup copies an SQLite database; for PostgreSQL use pg_dump \
         (e.g. pg_dump --format=custom --file=paysteps.dump \"$DATABASE_URL\")"
    )]
    Postgres,
    /// There is no database file to copy.
    #[error("no SQLite database at {0}")]
    NoDatabase(PathBuf),
    /// The destination exists already; a backup never overwrites anything.
    #[error("{0} already exists; a backup never overwrites a file, choose a new name")]
    Exists(PathBuf),
    /// SQLite could not make or check the copy.
    #[error("backing up to {path}: {source}")]
    Sqlite {
        /// The destination.
        path: PathBuf,
        /// What SQLite said.
        source: sqlx::Error,
    },
    /// The copy could not be synced to disk.
    #[error("syncing {path}: {source}")]
    Io {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Size of the copy, in bytes.
    pub bytes: u64,
    /// Events in the copy.
    pub events: i64,
    /// Runs in the copy.
    pub runs: i64,
}

/// Copies the SQLite database named by `url` (as [`Store::connect`](super::Store::connect)
/// takes it) to `dest`, a file that must not exist yet; the copy is synced and opened
/// again to read what it holds.
pub async fn backup(url: &str, dest: &Path) -> Result<Backup, BackupError> {
    let source = super::sqlite_path(url).ok_or(BackupError::Postgres)?;
    if !source.is_file() {
        return Err(BackupError::NoDatabase(source.to_owned()));
    }
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_owned()));
    }
    let sqlite = |source| BackupError::Sqlite {
        path: dest.to_owned(),
        source,
    };
    let mut conn = connect(source).await.map_err(sqlite)?;
    // `VACUUM INTO` refuses a destination that appeared since the check above.
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(dest.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    copied.map_err(sqlite)?;
    // SQLite does not sync what `VACUUM INTO` wrote.
    let io = |source| BackupError::Io {
        path: dest.to_owned(),
        source,
    };
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    let bytes = std::fs::metadata(dest).map_err(io)?.len();
    let mut copy = connect(dest).await.map_err(sqlite)?;
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events")
        .fetch_one(&mut copy)
        .await
        .map_err(sqlite)?;
    let (runs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM runs")
        .fetch_one(&mut copy)
        .await
        .map_err(sqlite)?;
    let _ = copy.close().await;
    Ok(Backup {
        bytes,
        events,
        runs,
    })
}

/// A connection to an existing database, waiting for locks as the store's do.
async fn connect(path: &Path) -> Result<SqliteConnection, sqlx::Error> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(10));
    SqliteConnection::connect_with(&options).await
}
