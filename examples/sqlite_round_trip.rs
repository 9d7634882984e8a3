//! What one statement costs through sqlx's SQLite driver, whose connection lives on a
//! thread of its own: 5,000 single-row inserts in one transaction, sent one per query
//! and then ten per query. Run it as is, then pinned to one core, to see what a
//! round trip between the two threads costs across cores and on one:
//!
//! ```sh
//! cargo run --release --example sqlite_round_trip
//! taskset -c 0 target/release/examples/sqlite_round_trip
//! ```

use std::str::FromStr;
use std::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor, SqliteConnection};

const ROWS: usize = 5_000;
const PER_QUERY: usize = 10;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(dir.path().join("round-trip.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
        .await?;

    let began = Instant::now();
    conn.execute("BEGIN").await?;
    for i in 0..ROWS {
        sqlx::query("INSERT INTO t (a, b) VALUES ($1, $2)")
            .bind(format!("row {i}"))
            .bind(i as i64)
            .execute(&mut conn)
            .await?;
    }
    conn.execute("COMMIT").await?;
    let one = began.elapsed().as_secs_f64() * 1e6 / ROWS as f64;

    let sql: String = (1..=PER_QUERY)
        .map(|k| format!("INSERT INTO t (a, b) VALUES (${}, ${}); ", 2 * k - 1, 2 * k))
        .collect();
    let began = Instant::now();
    conn.execute("BEGIN").await?;
    for i in 0..ROWS / PER_QUERY {
        let mut query = sqlx::query(&sql);
        for k in 0..PER_QUERY {
            query = query
                .bind(format!("row {i}.{k}"))
                .bind((i * PER_QUERY + k) as i64);
        }
        query.execute(&mut conn).await?;
    }
    conn.execute("COMMIT").await?;
    let batched = began.elapsed().as_secs_f64() * 1e6 / ROWS as f64;

    println!("one statement per query:  {one:.1} µs per statement");
    println!("{PER_QUERY} statements per query: {batched:.1} µs per statement");
    conn.close().await?;
    Ok(())
}
