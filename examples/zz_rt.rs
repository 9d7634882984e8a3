use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor, SqliteConnection};
use std::future::Future;
use std::str::FromStr;
use std::time::Instant;

fn spin_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

async fn bench(c: &mut SqliteConnection, label: &str) {
    let n = 5000;
    let t = Instant::now();
    c.execute("BEGIN").await.unwrap();
    for i in 0..n {
        sqlx::query("INSERT INTO t (a, b) VALUES ($1, $2)")
            .bind(format!("x{i}"))
            .bind(i as i64)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    c.execute("COMMIT").await.unwrap();
    println!(
        "{label}: single inserts: {:.1} us/stmt",
        t.elapsed().as_micros() as f64 / n as f64
    );
}

fn main() {
    let _ = std::fs::remove_file("/tmp/rt/x.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = rt.block_on(async {
        let o = SqliteConnectOptions::from_str("sqlite:///tmp/rt/x.db")
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let mut c = SqliteConnection::connect_with(&o).await.unwrap();
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
            .await
            .unwrap();
        c
    });
    rt.block_on(bench(&mut c, "tokio current_thread"));
    let _g = rt.enter();
    spin_on(bench(&mut c, "spin"));
    rt.block_on(bench(&mut c, "tokio current_thread"));
}
