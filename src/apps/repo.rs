//! The statements over the `apps` table.

use serde::Serialize;

use crate::args;
use crate::store::{Result, Store};

/// An app as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AppRow {
    /// The URL paysteps calls, e.g. `http://127.0.0.1:3000/api/inngest`.
    pub url: String,
    /// The app's id as its SDK names it, once synced.
    pub app_id: Option<String>,
    /// The SDK and its version, e.g. `js:v4.24.0`.
    pub sdk: Option<String>,
    /// The framework the app serves from, e.g. `nodejs`, `nextjs`.
    pub framework: Option<String>,
    /// The registration last accepted, as JSON.
    #[serde(skip)]
    pub registration: Option<String>,
    /// SHA-256 of the registration last accepted: a sync that changes nothing is seen as such.
    #[serde(skip)]
    pub checksum: Option<String>,
    /// Functions in the registration last accepted.
    pub function_count: i64,
    /// When a registration was last accepted, in milliseconds since the Unix epoch.
    pub synced_at: Option<i64>,
    /// Why the last sync failed or was refused; `None` once a sync succeeds.
    pub error: Option<String>,
    /// When paysteps last tried to sync, in milliseconds since the Unix epoch.
    pub checked_at: Option<i64>,
    /// When paysteps first knew of the app, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

const COLUMNS: &str = "url, app_id, sdk, framework, registration, checksum, function_count, \
     synced_at, error, checked_at, created_at";

/// Records an app paysteps was told of, unless it knows it already.
pub async fn ensure(store: &Store, url: &str, now: i64) -> Result<()> {
    store
        .execute(
            "INSERT INTO apps (url, created_at) VALUES ($1, $2) ON CONFLICT (url) DO NOTHING"
                .into(),
            args![url, now],
        )
        .await?;
    Ok(())
}

/// Every app, in the order paysteps learnt of them.
pub async fn list(store: &Store) -> Result<Vec<AppRow>> {
    store
        .fetch_all(
            &format!("SELECT {COLUMNS} FROM apps ORDER BY created_at, url"),
            args![],
        )
        .await
}

/// One app.
pub async fn get(store: &Store, url: &str) -> Result<Option<AppRow>> {
    store
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM apps WHERE url = $1"),
            args![url],
        )
        .await
}

/// What a registration that was accepted replaces.
pub struct Accepted<'a> {
    pub url: &'a str,
    pub app_id: &'a str,
    pub sdk: Option<&'a str>,
    pub framework: Option<&'a str>,
    pub registration: &'a str,
    pub checksum: &'a str,
    pub function_count: i64,
}

/// Keeps an accepted registration and clears the app's error.
pub async fn accept(store: &Store, accepted: Accepted<'_>, now: i64) -> Result<()> {
    let Accepted {
        url,
        app_id,
        sdk,
        framework,
        registration,
        checksum,
        function_count,
    } = accepted;
    store
        .execute(
            "INSERT INTO apps (url, app_id, sdk, framework, registration, checksum, \
             function_count, synced_at, error, checked_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $8, $8) \
             ON CONFLICT (url) DO UPDATE SET app_id = excluded.app_id, sdk = excluded.sdk, \
             framework = excluded.framework, registration = excluded.registration, \
             checksum = excluded.checksum, function_count = excluded.function_count, \
             synced_at = excluded.synced_at, error = NULL, checked_at = excluded.checked_at"
                .into(),
            args![
                url,
                app_id,
                sdk.map(str::to_owned),
                framework.map(str::to_owned),
                registration,
                checksum,
                function_count,
                now
            ],
        )
        .await?;
    Ok(())
}

/// Records why a sync failed; the registration accepted before stays in force.
pub async fn refuse(store: &Store, url: &str, error: &str, now: i64) -> Result<()> {
    store
        .execute(
            "INSERT INTO apps (url, error, checked_at, created_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (url) DO UPDATE SET error = excluded.error, checked_at = excluded.checked_at"
                .into(),
            args![url, error, now],
        )
        .await?;
    Ok(())
}

/// Notes a sync that changed nothing.
pub async fn unchanged(store: &Store, url: &str, now: i64) -> Result<()> {
    store
        .execute(
            "UPDATE apps SET error = NULL, checked_at = $2, synced_at = $2 WHERE url = $1".into(),
            args![url, now],
        )
        .await?;
    Ok(())
}
