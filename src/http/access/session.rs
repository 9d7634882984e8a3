//! Dashboard sign-ins, kept in the database so every process sharing it knows them: a
//! random id per sign-in (the cookie's value; only its SHA-256 is stored), its CSRF token,
//! and when it expires. Signing out deletes the row.

use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::args;
use crate::store::{Result, Store};

/// A session a request's cookie named, still valid.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token the page sends back on writes (`x-csrf-token`).
    pub csrf: String,
}

/// A session just opened: the cookie value to hand to the browser, once.
pub struct Opened {
    /// The session id, the cookie's value.
    pub id: String,
}

/// Opens a session bound to `token_tag` that lasts `ttl` from `now_ms`, and forgets
/// expired ones on the way.
pub async fn open(store: &Store, token_tag: &str, now_ms: i64, ttl: Duration) -> Result<Opened> {
    let id = random_hex();
    let row = args![
        id_hash(&id),
        token_tag,
        random_hex(),
        now_ms,
        now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
    ];
    store
        .write(crate::store::Write::isolated(), move |tx| {
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
    Ok(Opened { id })
}

/// The session whose id is `id`, if it was opened with `token_tag` and has not expired
/// or been signed out.
pub async fn find(
    store: &Store,
    id: &str,
    token_tag: &str,
    now_ms: i64,
) -> Result<Option<Session>> {
    if !well_formed(id) {
        return Ok(None);
    }
    let row: Option<(String,)> = store
        .fetch_optional(
            "SELECT csrf FROM dashboard_sessions \
             WHERE id_hash = $1 AND token_tag = $2 AND expires_at > $3",
            args![id_hash(id), token_tag, now_ms],
        )
        .await?;
    Ok(row.map(|(csrf,)| Session { csrf }))
}

/// Ends the session whose id is `id` (nothing when there is none).
pub async fn close(store: &Store, id: &str) -> Result<()> {
    if well_formed(id) {
        store
            .execute(
                "DELETE FROM dashboard_sessions WHERE id_hash = $1".to_owned(),
                args![id_hash(id)],
            )
            .await?;
    }
    Ok(())
}

/// 256 random bits from the thread's CSPRNG, as 64 hex digits.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn well_formed(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_stored_only_as_their_hash() {
        let (a, b) = (random_hex(), random_hex());
        assert_ne!(a, b);
        assert!(well_formed(&a));
        assert!(!well_formed("paysteps"));
        assert!(!well_formed(&a[1..]));
        let hash = id_hash(&a);
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, a);
        assert_eq!(hash, id_hash(&a));
    }
}
