//! One fresh database per test, on either backend, and the macro that runs a test on both.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Once;

use paysteps::testing::store::Store;
use sqlx::Connection;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the suite may use, from `TEST_DATABASE_URL`.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Says once, past the test harness's capture, that the PostgreSQL variants did not run.
pub fn report_postgres_skipped() {
    static ONCE: Once = Once::new();
    skipped(
        &ONCE,
        "PostgreSQL suite skipped: TEST_DATABASE_URL is not set",
    );
}

/// Says once, past the test harness's capture, that a suite did not run: or, when
/// `PAYSTEPS_TEST_REQUIRE_ALL` is set (as CI sets it), fails the test that would skip.
pub fn skipped(once: &Once, message: &str) {
    if std::env::var_os("PAYSTEPS_TEST_REQUIRE_ALL").is_some_and(|v| !v.is_empty()) {
        panic!("{message}, and PAYSTEPS_TEST_REQUIRE_ALL forbids skipping a suite");
    }
    once.call_once(|| {
        let _ = writeln!(std::io::stderr(), "{message}");
    });
}

pub enum TestDb {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres { server: String, schema: String },
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("paysteps.db");
                TestDb::Sqlite { _dir: dir, path }
            }
            Backend::Postgres => {
                let server = postgres_url().expect("TEST_DATABASE_URL");
                let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
                let mut conn = sqlx::PgConnection::connect(&server)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut conn)
                    .await
                    .expect("create schema");
                let _ = conn.close().await;
                TestDb::Postgres { server, schema }
            }
        }
    }

    /// A URL that reaches this test's database (with its schema on PostgreSQL).
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            TestDb::Postgres { server, schema } => {
                let sep = if server.contains('?') { '&' } else { '?' };
                format!("{server}{sep}options[search_path]={schema}")
            }
        }
    }

    /// A new, migrated store on this database (each call is another "process").
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url()).await.expect("open store");
        store.migrate().await.expect("migrate");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { server, schema } = self {
            let (server, schema) = (server.clone(), schema.clone());
            // Drop runs outside any runtime guarantee: clean up on a thread of its own. The
            // test's runtime waits for that thread, so a connection of a failed test that
            // still holds a lock cannot let go of it: the drop gives up after a while
            // rather than wait for ever, leaving a schema no later run uses.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                        let _ = sqlx::query("SET lock_timeout = '5s'")
                            .execute(&mut conn)
                            .await;
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut conn)
                            .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Stamps each listed `async fn name(backend: Backend)` into a `sqlite::name` and a
/// `postgres::name` test; the PostgreSQL ones return at once, saying so, without
/// `TEST_DATABASE_URL`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if $crate::common::db::postgres_url().is_none() {
                        $crate::common::db::report_postgres_skipped();
                        return;
                    }
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}
