use thiserror::Error;

/// The result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Storage failures, classified once so callers decide by kind, not by driver text.
#[derive(Debug, Error)]
pub enum Error {
    /// The database cannot be reached or is busy; the caller should retry later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A query that must return a row returned none (`fetch_one`).
    #[error("not found")]
    NotFound,
    /// A write broke a unique constraint (the row exists already).
    #[error("conflicting write: {0}")]
    Conflict(#[source] sqlx::Error),
    /// Applying the migrations at start failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not have the shape its reader expects; says which.
    #[error("stored value could not be decoded: {0}")]
    Decode(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    /// The batch this write belonged to could not be committed.
    #[error("transaction failed: {0}")]
    Transaction(String),
    /// The writer task has stopped (the store is shutting down).
    #[error("store is closed")]
    Closed,
}

impl Error {
    /// Whether the failure is transient (database unreachable or busy, batch not committed,
    /// store closing): the operation may succeed when retried later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Transaction(_) | Error::Closed
        )
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => Error::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => Error::Unavailable(err),
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(err),
            sqlx::Error::Database(db) if is_busy(db.code().as_deref()) => Error::Unavailable(err),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                Error::Decode(err.to_string())
            }
            _ => Error::Other(err),
        }
    }
}

/// SQLite's BUSY/LOCKED and PostgreSQL's connection-class codes mean "try again later".
fn is_busy(code: Option<&str>) -> bool {
    match code {
        Some(code) => {
            matches!(
                code,
                "5" | "6" | "261" | "517" | "57P01" | "57P02" | "57P03"
            ) || code.starts_with("08")
        }
        None => false,
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Decode(err.to_string())
    }
}
