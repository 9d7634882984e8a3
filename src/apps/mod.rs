//! Apps written with the Inngest SDKs, whose functions paysteps runs: their registration
//! and sync, the protocol paysteps speaks to them, the handler that runs their functions,
//! and the signing both ways.

mod client;
pub(crate) mod config;
mod driver;
pub(crate) mod duration;
pub(crate) mod events;
mod memo;
pub(crate) mod protocol;
mod register;
pub(crate) mod repo;
pub(crate) mod signing;
mod sync;

pub use signing::{SigningKey, SigningKeys};
pub use sync::{Apps, RESYNC_EVERY, SyncError, SyncOutcome};
