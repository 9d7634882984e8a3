use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/functions", get(list))
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "functions": state.engine.functions() }))
}
