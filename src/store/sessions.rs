//! The `dashboard_sessions` table: one row per dashboard sign-in, keyed by the SHA-256 of
//! the cookie's value, so every process sharing the database knows the sign-in.

use super::{Result, Store, StoreTx};
use crate::args;
use crate::store::Write;

/// A sign-in to store. Hashing and token generation belong to the caller.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the session id (the cookie's value), hex.
    pub id_hash: String,
    /// Which dashboard credential the sign-in used.
    pub token_tag: String,
    /// The token the page sends back on writes.
    pub csrf: String,
    /// When it was opened, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it stops being valid, in milliseconds since the Unix epoch.
    pub expires_at: i64,
}

impl Store {
    /// Stores a sign-in and, in the same transaction, deletes the sessions expired at
    /// its `created_at`.
    pub(crate) async fn create_session(&self, session: NewSession) -> Result<()> {
        let now_ms = session.created_at;
        let row = args![
            session.id_hash,
            session.token_tag,
            session.csrf,
            session.created_at,
            session.expires_at,
        ];
        self.write(Write::isolated(), move |tx| {
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM dashboard_sessions WHERE expires_at <= $1",
                    args![now_ms],
                )
                .await?;
                tx.execute(
                    "INSERT INTO dashboard_sessions (id_hash, token_tag, csrf, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                    row,
                )
                .await
            })
        })
        .await?;
        Ok(())
    }

    /// The CSRF token of the session whose id hashes to `id_hash`, if it was opened with
    /// `token_tag` and is still valid at `now_ms`.
    pub(crate) async fn session_csrf(
        &self,
        id_hash: &str,
        token_tag: &str,
        now_ms: i64,
    ) -> Result<Option<String>> {
        let row: Option<(String,)> = self
            .fetch_optional(
                "SELECT csrf FROM dashboard_sessions \
                 WHERE id_hash = $1 AND token_tag = $2 AND expires_at > $3",
                args![id_hash, token_tag, now_ms],
            )
            .await?;
        Ok(row.map(|(csrf,)| csrf))
    }

    /// Deletes the session whose id hashes to `id_hash` (nothing when there is none).
    pub(crate) async fn revoke_session(&self, id_hash: &str) -> Result<()> {
        self.execute(
            "DELETE FROM dashboard_sessions WHERE id_hash = $1".to_owned(),
            args![id_hash],
        )
        .await?;
        Ok(())
    }
}

impl StoreTx {
    /// Deletes at most `limit` sessions expired at `now_ms`, the soonest expired first;
    /// returns how many.
    pub(crate) async fn prune_sessions(&mut self, now_ms: i64, limit: i64) -> Result<u64> {
        self.execute(
            "DELETE FROM dashboard_sessions WHERE id_hash IN (SELECT id_hash FROM \
             dashboard_sessions WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)",
            args![now_ms, limit],
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_found_until_it_expires_or_is_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        store.migrate().await.unwrap();
        let session = |hash: &str, created_at: i64, expires_at: i64| NewSession {
            id_hash: hash.into(),
            token_tag: "tag".into(),
            csrf: format!("csrf-{hash}"),
            created_at,
            expires_at,
        };
        store.create_session(session("a", 0, 100)).await.unwrap();
        store.create_session(session("b", 10, 50)).await.unwrap();
        assert_eq!(
            store.session_csrf("a", "tag", 99).await.unwrap().as_deref(),
            Some("csrf-a")
        );
        assert_eq!(store.session_csrf("a", "other", 99).await.unwrap(), None);
        assert_eq!(store.session_csrf("a", "tag", 100).await.unwrap(), None);

        // Opening a session at 60 forgets "b", expired at 50.
        store.create_session(session("c", 60, 200)).await.unwrap();
        let pruned = store
            .write(Write::isolated(), |tx| {
                Box::pin(async move { tx.prune_sessions(1_000, 10).await })
            })
            .await
            .unwrap();
        assert_eq!(pruned, 2, "a and c had expired by 1000; b was gone already");

        store.create_session(session("d", 0, 100)).await.unwrap();
        store.revoke_session("d").await.unwrap();
        assert_eq!(store.session_csrf("d", "tag", 1).await.unwrap(), None);
    }
}
