//! What the integration tests and the benchmark reach beyond the public API: the HTTP
//! router and its state, Stripe fixtures and signing, the store's rows and engine-facing
//! writes, the payment and webhook repositories. Not part of the public API; it may change
//! in any release.

/// Inngest SDK apps: their sync and the functions they register.
pub mod apps {
    pub use crate::apps::*;
}

/// The command line's pieces (`serve_until`, the argument structs).
pub mod cli {
    pub use crate::cli::*;
}
/// Configuration values such as [`Secret`](crate::testing::config::Secret).
pub mod config {
    pub use crate::config::*;
}
/// The engine's internals: ids, operations, paths.
pub mod engine {
    pub use crate::engine::*;
}
/// The HTTP router, its state and access control.
pub mod http {
    pub use crate::http::*;
}
/// The Prometheus metrics.
pub mod ids {
    pub use crate::ids::*;
}

pub mod metrics {
    pub use crate::metrics::*;
}
/// The payment functions' repositories, reports and rules.
pub mod payments {
    pub use crate::payments::*;
}
/// Journal retention.
pub mod retention {
    pub use crate::retention::*;
}
/// Run, step and listener states.
pub mod state {
    pub use crate::state::*;
}
/// The store's rows, journal types and engine-facing writes.
pub mod store {
    /// Retention's counts, still found here by the tests that read them.
    pub use crate::retention::Pruned;
    pub use crate::store::*;
}
/// Stripe fixtures, signing, signature checking and objects.
pub mod stripe {
    pub use crate::stripe::*;
}
/// Outgoing webhooks: destinations, endpoints, secrets.
pub mod webhooks {
    pub use crate::webhooks::*;
}
