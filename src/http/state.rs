use std::sync::Arc;

use crate::engine::Engine;
use crate::stripe::signature::Verifier;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub verifier: Arc<Verifier>,
    /// Largest webhook body accepted, in bytes.
    pub max_body_bytes: usize,
}
