//! SQLite's statements storing an event and its runs: several statements in one query,
//! the last answering the key's holder and whether a listener waits for the name.

use crate::store::journal::EventStatement;

/// [`StoreTx::store_event`](crate::store::StoreTx::store_event) on SQLite for an event
/// without a window; answers the key's holder (the event itself when it has no key) and
/// whether any listener waits for the name.
pub(in crate::store) fn plain_event(statement: &EventStatement) -> String {
    let EventStatement { key, id, event, .. } = statement;
    format!(
        "INSERT INTO events ({}) VALUES ({}) ON CONFLICT (dedupe_key) DO NOTHING; \
         {}UPDATE events SET duplicates = duplicates + 1 WHERE dedupe_key = {key} AND id <> {id}; \
         SELECT COALESCE((SELECT id FROM events WHERE dedupe_key = {key}), {id}), {}",
        event.names(),
        event.values(),
        insert_runs(statement),
        statement.listened()
    )
}

/// [`StoreTx::store_event`](crate::store::StoreTx::store_event) on SQLite for an event
/// whose key holds for a window, until `expires`; answers the key's holder and whether
/// any listener waits for the name.
pub(in crate::store) fn keyed_event(statement: &EventStatement, expires: &str) -> String {
    let EventStatement {
        key,
        id,
        now,
        event,
        ..
    } = statement;
    format!(
        "INSERT INTO event_keys (key, event_id, expires_at) VALUES ({key}, {id}, {expires}) \
         ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, \
         expires_at = excluded.expires_at WHERE event_keys.expires_at <= {now}; \
         INSERT INTO events ({}) SELECT {} \
         WHERE EXISTS (SELECT 1 FROM event_keys WHERE key = {key} AND event_id = {id}); \
         {}UPDATE events SET duplicates = duplicates + 1 \
         WHERE id = (SELECT event_id FROM event_keys WHERE key = {key}) AND id <> {id}; \
         SELECT event_id, {} FROM event_keys WHERE key = {key}",
        event.names(),
        event.values(),
        insert_runs(statement),
        statement.listened()
    )
}

/// Statements inserting the runs, provided the event was stored.
fn insert_runs(statement: &EventStatement) -> String {
    let event_id = &statement.id;
    statement
        .runs
        .iter()
        .map(|run| {
            let row = statement.new_run(&run.id, &run.function_id, event_id, &run.replay_of);
            format!(
                "INSERT INTO runs ({}) SELECT {} \
                 WHERE EXISTS (SELECT 1 FROM events WHERE id = {event_id}); ",
                row.names(),
                row.values()
            )
        })
        .collect()
}
