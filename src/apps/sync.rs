//! Keeping paysteps' view of each app in step with the app: syncing it (in band, or by
//! the app's own `POST /fn/register`), keeping the registration accepted in the
//! database, and registering its functions on the engine.
//!
//! A sync that is refused (an unsupported setting, a malformed expression, an app that
//! cannot be reached) leaves the functions accepted before in force and records why, for
//! the Apps page. Each process re-syncs every few seconds and, between syncs, picks up
//! registrations another process accepted, so every process runs the same functions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::client::{AppClient, ClientError, Synced};
use super::config::{Refused, Registration};
use super::register::functions_of;
use super::repo::{self, Accepted, AppRow};
use super::signing::{SigningKeys, canonical};
use crate::engine::{Engine, EngineError};

/// How often each app is synced again.
pub const RESYNC_EVERY: Duration = Duration::from_secs(5);

/// How often a process picks up the registrations other processes accepted: an event
/// arriving here starts the app's functions at most this long after another process
/// learnt of them.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The apps paysteps runs functions of.
#[derive(Clone)]
pub struct Apps {
    inner: Arc<AppsInner>,
}

struct AppsInner {
    engine: Engine,
    client: AppClient,
    keys: Option<SigningKeys>,
    /// The URLs paysteps was given; calls go only to their origins.
    urls: Vec<Url>,
    /// The checksum each app's functions were registered from, in this process.
    installed: Mutex<HashMap<String, String>>,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The app could not be reached, or its answer read.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The registration declares what paysteps does not carry out.
    #[error("the registration was refused: {0}")]
    Refused(#[from] Refused),
    /// A function id is taken by a function outside the app.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// A registration for an app on an origin paysteps was not given.
    #[error("the app's URL {0} is not one paysteps was given (--app-url)")]
    UnknownApp(String),
    /// A registration without an app id.
    #[error("the registration names no app (appName is empty)")]
    NoAppId,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The functions changed.
    Updated {
        /// Functions registered now.
        functions: usize,
    },
    /// Nothing changed since the registration accepted before.
    Unchanged,
    /// The app registers itself out of band, through `/fn/register`.
    Awaiting,
}

impl Apps {
    /// The apps at `urls`, run on `engine`; signed with `keys` when given.
    pub fn new(engine: Engine, urls: Vec<Url>, keys: Option<SigningKeys>) -> Apps {
        Apps {
            inner: Arc::new(AppsInner {
                engine,
                client: AppClient::new(keys.clone()),
                keys,
                urls,
                installed: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether `url` is one of the apps paysteps was given.
    pub fn knows(&self, url: &Url) -> bool {
        self.inner.urls.contains(url)
    }

    /// The signing keys apps prove themselves with, when paysteps has them.
    pub fn keys(&self) -> Option<&SigningKeys> {
        self.inner.keys.as_ref()
    }

    /// The apps paysteps was given, as stored, for the Apps page.
    pub async fn list(&self) -> crate::store::Result<Vec<AppRow>> {
        Ok(self.configured(repo::list(self.inner.engine.store()).await?))
    }

    /// The stored apps among those paysteps was given: one dropped from `--app-url` is
    /// neither shown nor called.
    fn configured(&self, apps: Vec<AppRow>) -> Vec<AppRow> {
        apps.into_iter()
            .filter(|app| self.inner.urls.iter().any(|u| u.as_str() == app.url))
            .collect()
    }

    /// Records the configured apps and registers the functions accepted before, so runs
    /// in flight go on before the apps answer again.
    pub async fn load(&self) -> crate::store::Result<()> {
        let now = self.inner.engine.clock().now_ms();
        for url in &self.inner.urls {
            repo::ensure(self.inner.engine.store(), url.as_str(), now).await?;
        }
        self.refresh().await
    }

    /// Registers every stored registration this process has not registered yet.
    async fn refresh(&self) -> crate::store::Result<()> {
        for app in self.list().await? {
            let (Some(registration), Some(checksum)) = (&app.registration, &app.checksum) else {
                continue;
            };
            if self.installed_checksum(&app.url).as_deref() == Some(checksum.as_str()) {
                continue;
            }
            let Ok(url) = Url::parse(&app.url) else {
                continue;
            };
            let parsed = serde_json::from_str::<Registration>(registration)
                .map_err(|e| e.to_string())
                .and_then(|r| self.install(&url, &r, checksum).map_err(|e| e.to_string()));
            if let Err(err) = parsed {
                tracing::warn!(app = %app.url, error = %err, "a stored registration no longer registers");
            }
        }
        Ok(())
    }

    fn installed_checksum(&self, url: &str) -> Option<String> {
        self.inner
            .installed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned()
    }

    /// Registers an app's functions on the engine, replacing those it had.
    fn install(
        &self,
        url: &Url,
        registration: &Registration,
        checksum: &str,
    ) -> Result<usize, SyncError> {
        let functions = registration.functions(url)?;
        let count = functions.len();
        let engine_functions = functions_of(&self.inner.client, functions);
        self.inner
            .engine
            .install_app(url.as_str(), engine_functions)?;
        self.inner
            .installed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.as_str().to_owned(), checksum.to_owned());
        Ok(count)
    }

    /// Syncs the app at `url`: asks for its registration and accepts it.
    pub async fn sync(&self, url: &Url) -> Result<SyncOutcome, SyncError> {
        let result = match self.inner.client.sync(url).await {
            Ok(Synced::InBand(registration, raw)) => self.accept(url, &registration, &raw).await,
            Ok(Synced::OutOfBand) => Ok(SyncOutcome::Awaiting),
            Err(err) => Err(err.into()),
        };
        self.noted(url, result).await
    }

    /// Records why a sync failed, for the Apps page, and answers its outcome.
    async fn noted(
        &self,
        url: &Url,
        result: Result<SyncOutcome, SyncError>,
    ) -> Result<SyncOutcome, SyncError> {
        if let Err(err) = &result {
            let now = self.inner.engine.clock().now_ms();
            let store = self.inner.engine.store();
            repo::refuse(store, url.as_str(), &err.to_string(), now).await?;
        }
        result
    }

    /// Takes in a registration the app sent itself (`POST /fn/register`).
    pub async fn register(&self, body: &[u8]) -> Result<SyncOutcome, SyncError> {
        let registration: Registration =
            serde_json::from_slice(body).map_err(|e| ClientError::Unreadable(e.to_string()))?;
        let url = Url::parse(&registration.url)
            .map_err(|_| SyncError::UnknownApp(registration.url.clone()))?;
        if !self.knows(&url) {
            return Err(SyncError::UnknownApp(registration.url.clone()));
        }
        let result = self.accept(&url, &registration, body).await;
        self.noted(&url, result).await
    }

    async fn accept(
        &self,
        url: &Url,
        registration: &Registration,
        raw: &[u8],
    ) -> Result<SyncOutcome, SyncError> {
        if registration.app_id.trim().is_empty() {
            return Err(SyncError::NoAppId);
        }
        let checksum = checksum(raw);
        let now = self.inner.engine.clock().now_ms();
        let store = self.inner.engine.store();
        let stored = repo::get(store, url.as_str()).await?;
        if stored.as_ref().and_then(|a| a.checksum.as_deref()) == Some(checksum.as_str())
            && self.installed_checksum(url.as_str()).as_deref() == Some(checksum.as_str())
        {
            repo::unchanged(store, url.as_str(), now).await?;
            return Ok(SyncOutcome::Unchanged);
        }
        let functions = self.install(url, registration, &checksum)?;
        let text = String::from_utf8_lossy(raw);
        repo::accept(
            store,
            Accepted {
                url: url.as_str(),
                app_id: &registration.app_id,
                sdk: registration.sdk.as_deref(),
                framework: registration.framework.as_deref(),
                registration: &text,
                checksum: &checksum,
                function_count: functions as i64,
            },
            now,
        )
        .await?;
        tracing::info!(app = %url, functions, "app synced");
        Ok(SyncOutcome::Updated { functions })
    }

    /// Syncs every app now, then every [`RESYNC_EVERY`] until `shutdown`; between syncs,
    /// reads the apps table every second for what other processes accepted.
    pub fn spawn_poller(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let apps = self.clone();
        tokio::spawn(async move {
            let mut next_sync = tokio::time::Instant::now();
            loop {
                if tokio::time::Instant::now() >= next_sync {
                    next_sync += RESYNC_EVERY;
                    for url in &apps.inner.urls {
                        if let Err(err) = apps.sync(url).await {
                            tracing::debug!(app = %url, error = %err, "app sync failed");
                        }
                    }
                }
                if let Err(err) = apps.refresh().await {
                    tracing::warn!(error = %err, "reading the apps failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(REFRESH_EVERY) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        })
    }
}

/// What identifies a registration: its functions, in canonical form, so the same
/// functions registered in band or out of band are seen as the same.
fn checksum(raw: &[u8]) -> String {
    let functions = serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v.get("functions").cloned())
        .and_then(|f| canonical(&f).ok())
        .unwrap_or_else(|| raw.to_vec());
    hex::encode(Sha256::digest(functions))
}
