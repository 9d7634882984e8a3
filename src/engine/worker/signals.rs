//! Wake-ups from other processes: on PostgreSQL, a LISTEN connection turns each run
//! queued elsewhere into a wake-up of this engine's idle workers.

use std::sync::Arc;

use super::super::Inner;

/// Wakes idle workers when another process queues runs (PostgreSQL's LISTEN/NOTIFY).
pub(in crate::engine) async fn signal_loop(inner: Arc<Inner>) {
    let mut signals = loop {
        match inner.store.run_signals().await {
            Ok(Some(signals)) => break signals,
            Ok(None) => {
                inner.activity.send_modify(|a| a.listening = true);
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "listening for new runs failed; polling meanwhile");
                tokio::select! {
                    _ = tokio::time::sleep(inner.config.poll_interval) => continue,
                    _ = inner.shutdown.cancelled() => return,
                }
            }
        }
    };
    inner.activity.send_modify(|a| a.listening = true);
    loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Ok(()) => inner.wake.notify_waiters(),
                Err(_) => tokio::time::sleep(inner.config.poll_interval).await,
            },
            _ = inner.shutdown.cancelled() => return,
        }
    }
}
