use serde::Serialize;

/// An event as stored. `data` is the JSON payload as received.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    pub external_id: Option<String>,
    pub name: String,
    pub source: String,
    pub data: String,
    pub ts: i64,
    pub received_at: i64,
    pub object_id: Option<String>,
    pub customer: Option<String>,
    pub duplicates: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub id: String,
    pub function_id: String,
    pub event_id: String,
    pub status: String,
    pub run_at: i64,
    pub attempt: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub replay_of: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StepRow {
    pub run_id: String,
    pub step_key: String,
    pub name: String,
    pub position: i64,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub output: Option<String>,
    pub error: Option<String>,
    pub wake_at: Option<i64>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}
