//! PostgreSQL's statements storing an event and its runs: one statement of
//! data-modifying CTEs, answering the event id when it was stored and whether a listener
//! waits for the name.

use crate::store::journal::EventStatement;

/// [`StoreTx::store_event`](crate::store::StoreTx::store_event) on PostgreSQL for an
/// event without a window.
pub(in crate::store) fn plain_event(statement: &EventStatement) -> String {
    let event = &statement.event;
    format!(
        "WITH stored AS (INSERT INTO events ({}) VALUES ({}) \
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id){} \
         SELECT (SELECT id FROM stored), {}",
        event.names(),
        event.values(),
        insert_runs(statement),
        statement.listened()
    )
}

/// [`StoreTx::store_event`](crate::store::StoreTx::store_event) on PostgreSQL for an
/// event whose key holds for a window, until `expires`; answers the event id when the
/// claim succeeded. `alone` (for
/// [`Store::store_event_alone`](crate::store::Store::store_event_alone)) claims nothing
/// while a listener waits for the name, as matching it needs a transaction around the
/// whole.
pub(in crate::store) fn keyed_event(
    statement: &EventStatement,
    expires: &str,
    alone: bool,
) -> String {
    let EventStatement {
        key,
        id,
        now,
        event,
        ..
    } = statement;
    let claim = if alone {
        format!(
            "SELECT {key}, {id}, {expires} WHERE NOT {}",
            statement.listened()
        )
    } else {
        format!("VALUES ({key}, {id}, {expires})")
    };
    format!(
        "WITH claimed AS (INSERT INTO event_keys (key, event_id, expires_at) \
         {claim} ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, \
         expires_at = excluded.expires_at WHERE event_keys.expires_at <= {now} \
         RETURNING event_id), \
         stored AS (INSERT INTO events ({}) \
         SELECT {} FROM claimed RETURNING id){} \
         SELECT (SELECT event_id FROM claimed), {}",
        event.names(),
        event.values(),
        insert_runs(statement),
        statement.listened()
    )
}

/// A CTE inserting the runs for the event in CTE `stored`.
fn insert_runs(statement: &EventStatement) -> String {
    if statement.runs.is_empty() {
        return String::new();
    }
    let rows: Vec<String> = statement
        .runs
        .iter()
        .map(|run| {
            format!(
                "({}::text, {}::text, {}::text)",
                run.id, run.function_id, run.replay_of
            )
        })
        .collect();
    let row = statement.new_run("v.id", "v.function_id", "stored.id", "v.replay_of");
    // It runs although nothing reads it: data-modifying CTEs always do.
    format!(
        ", started AS (INSERT INTO runs ({}) SELECT {} \
         FROM stored, (VALUES {}) AS v(id, function_id, replay_of))",
        row.names(),
        row.values(),
        rows.join(", ")
    )
}
