//! The `dashboard_sessions` table: one row per dashboard sign-in, keyed by the SHA-256 of
//! the cookie's value, so every process sharing the database knows the sign-in.

use super::{Result, Store};
use crate::args;

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
    pub async fn create_session(&self, session: NewSession) -> Result<()> {
        let now_ms = session.created_at;
        let row = args![
            session.id_hash,
            session.token_tag,
            session.csrf,
            session.created_at,
            session.expires_at,
        ];
        self.write(move |tx| {
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
    pub async fn session_csrf(
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
    pub async fn revoke_session(&self, id_hash: &str) -> Result<()> {
        self.execute_statement(
            "DELETE FROM dashboard_sessions WHERE id_hash = $1".to_owned(),
            args![id_hash],
        )
        .await?;
        Ok(())
    }
}
