//! The state every HTTP handler shares.

use std::sync::Arc;

use super::access::Access;
use super::event_api::EventKeys;
use crate::engine::Engine;
use crate::stripe::signature::Verifier;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The engine events are handed to and runs read from.
    pub engine: Engine,
    /// Checks the `Stripe-Signature` of incoming webhooks.
    pub verifier: Arc<Verifier>,
    /// Largest webhook body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Keys accepted by `POST /e/{event_key}`.
    pub event_keys: EventKeys,
    /// Where outgoing webhook endpoints may point.
    pub webhook_destinations: crate::webhooks::Destinations,
    /// Who may use the dashboard and `/api/v1`.
    pub access: Access,
    /// Which subscription statuses entitle a user.
    pub entitlement: crate::payments::repo::Entitlement,
    /// The Stripe mode processed (`STRIPE_MODE`); events of the other are stored and
    /// acknowledged but start nothing. `None` processes both.
    pub stripe_mode: Option<crate::stripe::Mode>,
    /// The SDK apps whose functions paysteps runs (`--app-url`), if any.
    pub apps: Option<crate::apps::Apps>,
}
