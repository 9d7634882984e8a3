//! The `events` table and the dedupe keys in `event_keys`: storing an event with the
//! runs it starts, in one statement where the backend allows.

use super::{IngestOutcome, NewEvent, NewLease, NewRun, queues_runs};
use crate::args;
use crate::ids::EventId;
use crate::store::params::{Columns, Params};
use crate::store::postgres::{self, BatchedEvent, Made};
use crate::store::rows::EventRow;
use crate::store::{Arg, Backend, Dialect, Result, Store, StoreTx, sqlite};

const EVENT_COLUMNS: &str =
    "id, external_id, name, source, data, ts, received_at, object_id, customer, duplicates";

impl StoreTx {
    /// Stores an event and its runs, unless an event with the same dedupe key exists,
    /// in which case only its duplicate count moves and no run is created.
    #[doc(hidden)]
    pub async fn insert_event(
        &mut self,
        event: &NewEvent,
        runs: &[NewRun],
    ) -> Result<IngestOutcome> {
        Ok(self.store_event(event, runs, None).await?.0)
    }

    /// [`StoreTx::insert_event`], and whether any listener waits for events of this
    /// name (false only when that is known for sure), learned in the same round trip.
    /// With a `lease`, the runs are stored running under it, on their first attempt.
    pub(crate) async fn store_event(
        &mut self,
        event: &NewEvent,
        runs: &[NewRun],
        lease: Option<&NewLease>,
    ) -> Result<(IngestOutcome, bool)> {
        let (sql, args) = event_statement(self.dialect(), event, runs, lease, false);
        let claim = match self.dialect() {
            Dialect::Sqlite => {
                let (holder, listened): (EventId, bool) = self.fetch_one(&sql, args).await?;
                if holder == event.id {
                    Claim::Won { listened }
                } else {
                    Claim::Lost { holder }
                }
            }
            Dialect::Postgres => {
                let (stored, listened): (Option<String>, bool) = self.fetch_one(&sql, args).await?;
                match stored {
                    Some(_) => Claim::Won { listened },
                    None => Claim::Lost {
                        holder: self.count_duplicate(event).await?,
                    },
                }
            }
        };
        match claim {
            Claim::Lost { holder } => Ok((IngestOutcome::Duplicate { event_id: holder }, false)),
            Claim::Won { listened } => {
                if queues_runs(runs, lease) {
                    self.signal_new_runs().await?;
                }
                Ok((accepted(event, runs), listened))
            }
        }
    }

    /// On PostgreSQL, after the event's statement stored nothing: counts a duplicate on
    /// the event that holds the key and answers its id. The statement's snapshot may
    /// predate the holder's commit, so this takes statements of its own.
    async fn count_duplicate(&mut self, event: &NewEvent) -> Result<EventId> {
        let holder = match key_window(event) {
            Some((key, _)) => {
                let (holder,): (EventId,) = self
                    .fetch_one("SELECT event_id FROM event_keys WHERE key = $1", args![key])
                    .await?;
                self.execute(
                    "UPDATE events SET duplicates = duplicates + 1 WHERE id = $1",
                    args![&holder],
                )
                .await?;
                holder
            }
            None => {
                let (holder,): (EventId,) = self
                    .fetch_one(
                        "UPDATE events SET duplicates = duplicates + 1 WHERE dedupe_key = $1 \
                         RETURNING id",
                        args![event.dedupe_key.clone()],
                    )
                    .await?;
                holder
            }
        };
        Ok(holder)
    }

    /// Takes `key` for `event_id` until `now + window`, unless another event holds it
    /// still; then returns that event's id.
    pub(crate) async fn claim_event_key(
        &mut self,
        key: &str,
        event_id: &EventId,
        now: i64,
        window: i64,
    ) -> Result<Option<EventId>> {
        let taken: Option<(String,)> = self
            .fetch_optional(
                "INSERT INTO event_keys (key, event_id, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, \
                 expires_at = excluded.expires_at WHERE event_keys.expires_at <= $4 \
                 RETURNING event_id",
                args![key, event_id, now.saturating_add(window), now],
            )
            .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let (holder,): (EventId,) = self
            .fetch_one("SELECT event_id FROM event_keys WHERE key = $1", args![key])
            .await?;
        Ok(Some(holder))
    }
}

impl Store {
    /// [`StoreTx::insert_event`] as one statement committed alone, where that can be
    /// done: on PostgreSQL, when no listener waits for the event's name. An event without
    /// a window shares its statement, and its commit, with the others waiting to be
    /// stored. `None` means nothing was written and the event is for
    /// [`StoreTx::insert_event`] to store (a duplicate is also answered `None`). When it
    /// stores the event, same effect as `write(Write::isolated(), …)` running
    /// [`StoreTx::store_event`] with `lease`.
    #[doc(hidden)]
    pub async fn store_event_alone(
        &self,
        event: &NewEvent,
        runs: &[NewRun],
        lease: Option<&NewLease>,
    ) -> Result<Option<IngestOutcome>> {
        let Backend::Postgres(pg) = &self.0 else {
            return Ok(None);
        };
        if key_window(event).is_none() {
            let write = BatchedEvent {
                event: event.clone(),
                runs: runs.to_vec(),
                lease: lease.cloned(),
            };
            let made = pg.store_event(write).await?;
            return Ok((made == Made::Yes).then(|| accepted(event, runs)));
        }
        let (sql, args) = event_statement(Dialect::Postgres, event, runs, lease, true);
        let row: Option<(Option<String>, bool)> =
            self.execute_returning(sql, args).await?.into_iter().next();
        if !matches!(row, Some((Some(_), _))) {
            return Ok(None);
        }
        if queues_runs(runs, lease) {
            self.signal_new_runs();
        }
        Ok(Some(accepted(event, runs)))
    }

    /// Finds an event by its own id or by the id its sender gave it (`evt_…`), hence
    /// text rather than an [`EventId`].
    pub(crate) async fn event(&self, id: &str) -> Result<Option<EventRow>> {
        self.fetch_optional(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 \
                 UNION ALL SELECT {EVENT_COLUMNS} FROM events WHERE external_id = $1 LIMIT 1"
            ),
            args![id],
        )
        .await
    }
}

/// The key and window of an event whose dedupe key holds for a window.
fn key_window(event: &NewEvent) -> Option<(&str, i64)> {
    match (&event.dedupe_key, event.dedupe_for_ms) {
        (Some(key), Some(window)) => Some((key.as_str(), window)),
        _ => None,
    }
}

/// The one statement that stores an event and its runs, and its arguments. `alone` is
/// for a PostgreSQL statement committed on its own (see [`Store::store_event_alone`]).
fn event_statement(
    dialect: Dialect,
    event: &NewEvent,
    runs: &[NewRun],
    lease: Option<&NewLease>,
    alone: bool,
) -> (String, Vec<Arg>) {
    let statement = EventStatement::new(event, runs, lease);
    let sql = match (dialect, &statement.expires) {
        (Dialect::Sqlite, Some(expires)) => sqlite::keyed_event(&statement, expires),
        (Dialect::Sqlite, None) => sqlite::plain_event(&statement),
        (Dialect::Postgres, Some(expires)) => postgres::keyed_event(&statement, expires, alone),
        (Dialect::Postgres, None) => postgres::plain_event(&statement),
    };
    (sql, statement.params.into_args())
}

/// An event's statement being written: its arguments, bound once, and the placeholders
/// the backends' statement builders read them through.
pub(in crate::store) struct EventStatement {
    /// The dedupe key: `event_keys.key` for a key that holds for a window, else the
    /// `dedupe_key` column.
    pub key: String,
    /// paysteps' id for the event.
    pub id: String,
    /// For a key that holds for a window: when it lapses.
    pub expires: Option<String>,
    /// When the event was received: the time the statement writes.
    pub now: String,
    /// The event's name.
    pub name: String,
    /// The columns of the event's row.
    pub event: Columns,
    /// The values of each run.
    pub runs: Vec<NewRunValues>,
    /// The lease the runs are stored under: its owner and expiry.
    pub lease: Option<(String, String)>,
    params: Params,
}

/// The placeholders of one run stored with its event.
pub(in crate::store) struct NewRunValues {
    pub id: String,
    pub function_id: String,
    pub replay_of: String,
}

impl EventStatement {
    fn new(event: &NewEvent, runs: &[NewRun], lease: Option<&NewLease>) -> EventStatement {
        let mut params = Params::default();
        let received_at = event.received_at;
        let (key, expires) = match key_window(event) {
            Some((key, window)) => (
                params.bind(key),
                Some(params.bind(received_at.saturating_add(window))),
            ),
            None => (params.bind(event.dedupe_key.clone()), None),
        };
        let id = params.bind(&event.id);
        let now = params.bind(received_at);
        let name = params.bind(&event.name);
        // A key that holds for a window lives in `event_keys`, not in the row.
        let dedupe_key = if expires.is_some() { "NULL" } else { &key };
        let columns = Columns::default()
            .value("id", &id)
            .value("dedupe_key", dedupe_key)
            .bind(&mut params, "external_id", event.external_id.clone())
            .value("name", &name)
            .bind(&mut params, "source", &event.source)
            .bind(&mut params, "data", &event.data)
            .bind(&mut params, "ts", event.ts)
            .value("received_at", &now)
            .bind(&mut params, "object_id", event.object_id.clone())
            .bind(&mut params, "customer", event.customer.clone());
        let runs: Vec<NewRunValues> = runs
            .iter()
            .map(|run| NewRunValues {
                id: params.bind(&run.id),
                function_id: params.bind(&run.function_id),
                replay_of: params.bind(run.replay_of.clone()),
            })
            .collect();
        // The runs read the lease; without runs it is not bound.
        let lease = lease
            .filter(|_| !runs.is_empty())
            .map(|lease| (params.bind(&lease.owner), params.bind(lease.expires_at)));
        EventStatement {
            key,
            id,
            expires,
            now,
            name,
            event: columns,
            runs,
            lease,
            params,
        }
    }

    /// The columns of a new run given the SQL of its id, function, event and replayed
    /// run: queued and due now, or running under the lease on its first attempt.
    pub(in crate::store) fn new_run(
        &self,
        id: &str,
        function_id: &str,
        event_id: &str,
        replay_of: &str,
    ) -> Columns {
        let now = self.now.as_str();
        let row = Columns::default()
            .value("id", id)
            .value("function_id", function_id)
            .value("event_id", event_id);
        match &self.lease {
            Some((owner, expires)) => row
                .value("status", "'running'")
                .value("run_at", now)
                .value("due_at", expires)
                .value("replay_of", replay_of)
                .value("concurrency_key", "NULL")
                .value("created_at", now)
                .value("updated_at", now)
                .value("attempt", "1")
                .value("lease_owner", owner)
                .value("lease_expires_at", expires)
                .value("started_at", now),
            None => row
                .value("status", "'queued'")
                .value("run_at", now)
                .value("due_at", now)
                .value("replay_of", replay_of)
                .value("concurrency_key", "NULL")
                .value("created_at", now)
                .value("updated_at", now),
        }
    }

    /// Whether any listener waits for the event's name, as an SQL expression.
    pub(in crate::store) fn listened(&self) -> String {
        format!(
            "EXISTS (SELECT 1 FROM listeners WHERE event_name = {})",
            self.name
        )
    }
}

/// The answer for an event stored with these runs.
fn accepted(event: &NewEvent, runs: &[NewRun]) -> IngestOutcome {
    IngestOutcome::Accepted {
        event_id: event.id.clone(),
        runs: runs.iter().map(|r| r.id.clone()).collect(),
    }
}

/// How claiming an event's dedupe key went.
enum Claim {
    /// The key is this event's: the event and its runs are stored; `listened` says
    /// whether any listener waits for its name.
    Won { listened: bool },
    /// Another event holds the key; its duplicate count moved.
    Lost { holder: EventId },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::params::assert_matches_args;

    fn event(window: Option<i64>) -> NewEvent {
        NewEvent {
            id: "ev_1".parse().unwrap(),
            dedupe_key: Some("stripe:evt_1".into()),
            dedupe_for_ms: window,
            external_id: Some("evt_1".into()),
            name: "stripe/invoice.paid".into(),
            source: "stripe".into(),
            data: "{}".into(),
            ts: 1,
            received_at: 2,
            object_id: None,
            customer: Some("cus_1".into()),
        }
    }

    fn run(n: usize) -> NewRun {
        NewRun {
            id: format!("run_{n}").parse().unwrap(),
            function_id: "f".parse().unwrap(),
            replay_of: None,
        }
    }

    #[test]
    fn every_event_statement_reads_exactly_its_arguments() {
        let lease = NewLease {
            owner: "wrk_1".into(),
            expires_at: 9,
        };
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for window in [None, Some(60_000)] {
                for runs in [0, 1, 3] {
                    let runs: Vec<NewRun> = (0..runs).map(run).collect();
                    for lease in [None, Some(&lease)] {
                        for alone in [false, true] {
                            let (sql, args) =
                                event_statement(dialect, &event(window), &runs, lease, alone);
                            assert_matches_args(&sql, &args);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_new_run_lists_as_many_values_as_columns() {
        let lease = NewLease {
            owner: "wrk_1".into(),
            expires_at: 9,
        };
        for lease in [None, Some(&lease)] {
            let statement = EventStatement::new(&event(None), &[run(0)], lease);
            let row = statement.new_run("$9", "$10", "$2", "$11");
            assert_eq!(
                row.names().split(", ").count(),
                row.values().split(", ").count()
            );
        }
    }
}
