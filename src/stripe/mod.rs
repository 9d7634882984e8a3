//! What Stripe sends: the `Stripe-Signature` header (checked here, not by async-stripe, so
//! rotated secrets and a configurable tolerance work), a signer for tests and `trigger`, and
//! the minimal event envelope read at ingest.

pub mod api;
pub mod envelope;
pub mod fixtures;
pub mod mode;
pub mod objects;
pub mod signature;
pub mod signer;

pub use mode::Mode;
