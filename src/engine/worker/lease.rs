//! Lease renewal: every third of the lease, the runs this engine is executing have their
//! lease extended, so no other worker claims a run that is still in progress.

use std::sync::Arc;

use super::super::Inner;
use super::super::clock::duration_ms;

pub(in crate::engine) async fn renew_loop(inner: Arc<Inner>) {
    let every = inner.config.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        let active = inner
            .active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if active.is_empty() {
            continue;
        }
        let expires = inner.config.clock.now_ms() + duration_ms(inner.config.lease);
        if let Err(err) = inner
            .store
            .renew_leases(&inner.owner, active, expires)
            .await
        {
            tracing::warn!(error = %err, "renewing leases failed");
        }
    }
}
