//! paysteps: Stripe webhooks turned into durable, replayable step functions.

pub mod engine;
pub mod store;
pub mod stripe;
