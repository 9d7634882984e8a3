//! paysteps: Stripe webhooks turned into durable, replayable step functions.

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod payments;
pub mod retention;
pub mod state;
pub mod store;
pub mod stripe;
pub mod webhooks;
